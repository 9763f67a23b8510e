"""How late is a breach alert? Three phases on one engine, each printing its figures when it ends:

- spread: 10,000 open SLA clocks, 2,000 of them coming due over 5 minutes;
- storm: 1,000 clocks coming due in the same second, with state queries timed while it drains;
- backfill: 10,000 instances started as fast as the engine takes them (a CRM backfill) while
  200 live clocks come due over 2 minutes.

Runs the embedded dev server (as `duly up` starts it) and `python worker.py` as a subprocess
(with DULY_* pointing at a fresh store, `--db sqlite` (a temporary file) or `--db postgresql` (a
new schema in PostgreSQL's `test` database at 127.0.0.1:5432, dropped afterwards), and a
temporary definitions folder holding copies of the shipped calendars, org and templates plus
three bench-only processes). Each instance opens one task whose wall-clock SLA is chosen by the
instance data (`within: {by: "{{ due }}", ...}`) with the ladder `[{at: 100%, notify: manager}]`:
at the due time the workflow records the breach and the `escalate` activity writes one alert row
for the manager, whose email the worker's deliverer sends to a local SMTP sink.

The delay measured is from each clock's exact due time to the moment its alert row is committed,
as seen by this process reading duly's `alerts` table every `--poll` seconds (only the rows of
clocks already due and not yet seen: a poll costs what is awaited, not the table's size; with
more than 100 awaited, the interval grows with them). The row's own `created_at` is the rung's
`fired_at`, the workflow's `workflow.now()` when the timer fired, so it splits the delay in two:
due -> rung fired (the server's timer and the workflow task) and rung fired -> row committed (the
activity). The manager's email is timed too, from the due time to its arrival at the sink. After
each phase, the alert rows are counted against the clocks that came due: none may be lost or
duplicated, and none may be early (a clock not due with an alert).

Each phase prints the machine's speed beside its figures: clocks opened per second and the CPU
seconds the worker and the dev server spent per opened clock, so figures from different
machines can be compared.

spread: first the 8,000 `breach-far` instances (due in 30 days) start as fast as the worker
opens them (at most `--concurrency` not yet open); then the 2,000 `breach-spread` ones, each
started with `due: g<n>` in its data, `n` (a multiple of 10 s) chosen from the recent start
latency so that the clock, counting from its own start, comes due at its place in the 5-minute
window that begins once all are expected to be open. The exact due time of each is read back from
the task row `open_task` wrote (`due_at`).

storm: 1,000 more `breach-storm` instances open with the far target; once all are open, an event
for each sets a target of whole seconds, `ceil(D - opened_at)`, so every clock comes due in the
same second `[D, D + 1)`. D is set from the rate at which a first sample of 50 was retargeted
(to their farthest target, brought forward with the rest), so a slower machine gets more lead.
While it drains, `--query-rate` state queries a second (what the
instance page asks) go to random storm instances; their latency is reported, and a query that
fails or times out is counted, never fatal.

backfill: `--live` live clocks open first, due over `--live-window` s from `--alone` s after the
backfill begins; then `--backfill` `breach-far` instances start at bulk priority, as `duly
import` starts them, at most `--concurrency` not yet open (the engine's pace: an instance counts
as started when its first task is open). Its start
rate while they come due is set beside its rates alone, in the same run: before the first comes
due (the worker's cache still filling) and after the last (the cache full); the share is taken
against the faster of the two.

`--backlog empty` takes the reps' channels away, so no assignment email is queued and the
deliverer sends alerts only: run it beside the default to see what bulk work costs SLA work.

Usage: .venv/bin/python bench/breach_latency.py [--db sqlite|postgresql] [--backlog full|empty]
    [--clocks 10000] [--due 2000] [--window 300] [--storm 1000] [--query-rate 5]
    [--backfill 10000] [--live 200] [--live-window 120] [--alone 60]
    [--concurrency 200] [--poll 0.025]
(a phase with a count of 0 is left out; about 35 minutes at the defaults on 2 CPUs; scale down
with e.g. --clocks 300 --due 60 --window 30 --storm 100 --backfill 500 --live 30
--live-window 20 --alone 15 to try it)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import platform
import random
import resource
import sys
import tempfile
import time
import traceback
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _harness as h
import sqlalchemy as sa
import structlog
from sqlmodel import col, select
from temporalio.api.enums.v1 import EventType, TaskQueueKind
from temporalio.client import Client
from temporalio.common import Priority
from temporalio.service import RPCError

from duly import client as duly_client
from duly.api.web.pages import PAGE_STATE_WAIT
from duly.language.loader import Definitions, load_definitions
from duly.services.auth import Principal
from duly.services.context import ServiceContext, TemporalProvider
from duly.services.instances import instance_detail
from duly.settings import Settings
from duly.store.db import session_factory
from duly.store.models import Alert, Delivery
from workflows.contracts import ProcessContract
from workflows.messages import EventInput, InstanceState, workflow_of
from workflows.priority import BULK

FAR_PROCESS = "breach-far"
SPREAD = "breach-spread"
STORM = "breach-storm"
STEP = "wait"
FAR = "30 days"
SPREAD_GRID, SPREAD_KEYS = 10, 240  # spread targets g10..g2400: every 10 seconds
STORM_KEYS = 900  # storm targets t1..t900: whole seconds (a slow machine opens 1,000 in minutes)
TARGET_P99 = 2.0
TARGET_BACKFILL_SHARE = 0.8  # of the backfill's start rate alone, while live clocks come due
SEND_CONCURRENCY = 2  # retarget events in flight
RETARGET_SAMPLE = 50  # storm clocks retargeted first, to time how fast the engine retargets
CHECK_CONCURRENCY = 20  # state queries in flight while checking retargets
QUERY_PATIENCE = 30.0  # seconds a timed state query may take before it counts as timed out
SAMPLE = 100  # histories read to split "due -> rung fired"

PROCESS = """# Written by bench/breach_latency.py: one task with a wall-clock SLA and a breach rung.
process: {name}
title: "Bench: a clock per instance, due when the bench says"
version: 1
calendar: us-east
team: inbound-sales
trigger:
  event: bench.{name}
  key: "{{{{ id }}}}"
start: wait
steps:
  wait:
    kind: task
    title: "Bench clock {{{{ id }}}}"
    assign: owner
    sla:
      within:{within}
      escalate:
        - {{at: 100%, notify: manager}}
    outcomes: {{done: finish}}
  finish: {{kind: end, result: done}}
"""


def targets(prefix: str, seconds: list[int]) -> str:
    """A `by:` map: the target `<prefix><n>` is n seconds; no `due` in the data is 30 days."""
    lines = [f"        {prefix}{n}: {n} seconds" for n in seconds]
    return "\n".join(["", '        by: "{{ due }}"', f"        default: {FAR}", *lines])


def write_definitions(folder: Path, webhooks: int, *, quiet_reps: bool) -> Path:
    """Shipped calendars, org and templates, and the three bench processes."""
    definitions = h.copy_definitions(
        folder, webhooks=webhooks, processes=False, quiet_reps=quiet_reps
    )
    (definitions / "processes").mkdir()
    spread = [SPREAD_GRID * n for n in range(1, SPREAD_KEYS + 1)]
    for name, within in (
        (FAR_PROCESS, f" {FAR}"),
        (SPREAD, targets("g", spread)),
        (STORM, targets("t", list(range(1, STORM_KEYS + 1)))),
    ):
        text = PROCESS.format(name=name, within=within)
        (definitions / "processes" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return definitions


@dataclass
class Clock:
    """One instance and its task: when it opened and when its SLA is due."""

    instance: str
    task_id: str
    opened_at: datetime
    due_at: datetime


class AlertWatcher:
    """Stamps each awaited clock's breach alert with the wall time this process first saw it
    committed (when the poll that found it began: the row was committed by then)."""

    def __init__(self, engine: sa.Engine, interval: float) -> None:
        self.engine = engine
        self.interval = interval
        self.awaited: dict[str, float] = {}  # task id -> due (epoch seconds), not yet seen
        self.alerts: dict[str, tuple[float, datetime]] = {}  # task id -> (seen, created_at)
        self.running = True

    def expect(self, clocks: list[Clock]) -> None:
        for clock in clocks:
            self.awaited[clock.task_id] = clock.due_at.timestamp()

    async def run(self) -> None:
        while self.running:
            began = time.time()
            due = [task for task, at in self.awaited.items() if at <= began]
            if due:
                for task_id, created in await asyncio.to_thread(self._read, due):
                    self.alerts.setdefault(task_id, (began, created))
                    self.awaited.pop(task_id, None)
            # many awaited (a storm): fewer polls, each reading more
            await asyncio.sleep(self.interval * max(1.0, len(due) / 100))

    def _read(self, tasks: list[str]) -> list[Any]:
        breach = Alert.level == "breach"
        with self.engine.connect() as connection:
            return [
                row
                for chunk in h.chunks(tasks)
                for row in connection.execute(
                    select(Alert.task_id, Alert.created_at).where(
                        breach, col(Alert.task_id).in_(chunk)
                    )
                )
            ]


@dataclass
class Machine:
    """The worker's, the dev server's and this process's CPU seconds so far, and when."""

    worker: float
    server: float
    at: float
    bench: float = 0.0  # watching the alerts, querying, drawing pages: the machine's third user


@dataclass
class Bench:
    client: Client
    definitions: Definitions
    task_queue: str
    store: h.Store
    tasks: h.TaskOpenings
    alerts: AlertWatcher
    smtp: h.SmtpSink
    webhooks: h.HttpSink
    worker_pid: int
    server_pid: int
    args: argparse.Namespace
    latency: float | None = None
    rate: float | None = None  # clocks opened per second, lately
    due_so_far: set[str] = field(default_factory=set)  # task ids of every clock brought due

    def machine(self) -> Machine:
        own = resource.getrusage(resource.RUSAGE_SELF)
        return Machine(
            h.cpu_seconds(self.worker_pid),
            h.cpu_seconds(self.server_pid),
            time.time(),
            bench=own.ru_utime + own.ru_stime,
        )

    def speed(self, since: Machine, opened: int) -> str:
        """Clocks opened per second and CPU seconds per opened clock, since `since`."""
        now = self.machine()
        seconds = max(now.at - since.at, 1e-3)
        if not opened:
            return f"machine: nothing opened in {seconds:.0f} s"
        return (
            f"machine: {opened / seconds:.1f} clocks opened/s; CPU per opened clock: worker "
            f"{(now.worker - since.worker) / opened:.3f} s, dev server "
            f"{(now.server - since.server) / opened:.3f} s"
        )

    def delivered(self) -> int:
        """Notifications the sinks have received so far."""
        return self.smtp.received + self.webhooks.received

    def pending_deliveries(self) -> int:
        """Notifications queued in duly's outbox (`deliveries`) and not yet sent."""
        with self.store.engine.connect() as connection:
            query = select(sa.func.count()).where(col(Delivery.status) == "pending")
            return int(connection.execute(query).scalar_one())

    async def open(
        self,
        process: str,
        key: str,
        *,
        due: str | None = None,
        watched: bool = False,
        priority: Priority = Priority.default,
    ) -> Clock:
        """Start an instance (with `due` in its data, if given, at `priority`) and wait until its
        task is open (and, if `watched`, until the workflow watches its clock: the task row is
        committed before the workflow has taken in `open_task`'s result, and an event in between
        would not retarget the clock)."""
        data = {"id": key, "owner": "ana", **({"due": due} if due else {})}
        began = time.time()
        instance = await duly_client.start_instance(
            self.client,
            self.definitions,
            process,
            data,
            task_queue=self.task_queue,
            priority=priority,
        )
        task_id = f"{instance}/{STEP}/1"
        opened, due_at = await self.tasks.opened(task_id, timeout=600)
        assert due_at is not None
        clock = Clock(instance, task_id, opened, due_at)
        while watched and f"step:{STEP}" not in (await self.state(clock, patient=True)).clocks:
            await asyncio.sleep(0.2)
        # how long from asking to the clock starting, lately: due times are chosen with it
        started = opened.timestamp() - began
        self.latency = started if self.latency is None else 0.9 * self.latency + 0.1 * started
        return clock

    async def state(self, clock: Clock, *, patient: bool = False) -> InstanceState:
        """The instance's state query; `patient`: ask again, a second later, until it answers
        (a busy worker may let a query time out)."""
        handle = self.client.get_workflow_handle(workflow_of(clock.instance, task=False))
        while True:
            try:
                result: InstanceState = await handle.query(
                    duly_client.STATE_QUERY, result_type=InstanceState
                )
                return result
            except RPCError:
                if not patient:
                    raise
                await asyncio.sleep(1.0)

    async def open_many(self, process: str, keys: list[str], **options: Any) -> list[Clock]:
        """Open instances, at most `--concurrency` not yet open; notes the rate they opened."""
        semaphore = asyncio.Semaphore(self.args.concurrency)
        began = time.time()

        async def one(key: str) -> Clock:
            async with semaphore:
                return await self.open(process, key, **options)

        clocks = await asyncio.gather(*(one(key) for key in keys))
        self.rate = len(clocks) / max(time.time() - began, 1e-3)
        return clocks

    async def retarget(
        self,
        clocks: list[Clock],
        deadlines: list[datetime],
        *,
        grid: int,
        prefix: str,
        keys: int,
        round_: str = "due",
    ) -> tuple[list[Clock], int]:
        """Make each clock due at (just after) its deadline: an event picks the target
        `ceil((deadline - opened_at) / grid) * grid` seconds; every due time is then checked
        through the `state` query. Returns the clocks with their new due times, and how many
        could not be checked (their queries kept failing: counted, not fatal). `round_` names
        the events (an instance ignores an event id it has seen), so a clock can move twice."""
        moved: list[Clock] = []
        for clock, deadline in zip(clocks, deadlines, strict=True):
            steps = math.ceil((deadline - clock.opened_at).total_seconds() / grid)
            if not 1 <= steps <= keys:
                raise RuntimeError(
                    f"target {steps * grid} s is outside {prefix}{grid}..{prefix}{keys * grid}"
                )
            due = clock.opened_at + timedelta(seconds=steps * grid)
            moved.append(Clock(clock.instance, clock.task_id, clock.opened_at, due))
        # a few events at a time: a timer counts from when its workflow task completes, so a
        # burst of retargets would make the timers themselves late (see `breakdown`)
        sending = asyncio.Semaphore(SEND_CONCURRENCY)

        async def send(clock: Clock) -> None:
            async with sending:
                target = round((clock.due_at - clock.opened_at).total_seconds())
                handle = self.client.get_workflow_handle(workflow_of(clock.instance, task=False))
                event = EventInput(
                    id=f"{round_}-{clock.instance}",
                    type="bench.due",
                    data={"due": f"{prefix}{target}"},
                )
                await handle.signal(duly_client.EVENT_SIGNAL, event)

        checking = asyncio.Semaphore(CHECK_CONCURRENCY)
        unchecked = 0

        async def check(clock: Clock) -> None:
            nonlocal unchecked
            async with checking:
                actual = None
                for _ in range(50):
                    try:
                        actual = (await self.state(clock)).clocks[f"step:{STEP}"].due_at
                    except RPCError:
                        actual = None  # the worker too busy to answer: ask again
                    if actual == clock.due_at:
                        return
                    await asyncio.sleep(0.2)
                if actual is not None:
                    raise RuntimeError(f"{clock.instance}: due {actual}, expected {clock.due_at}")
                unchecked += 1

        await asyncio.gather(*(send(c) for c in moved))
        await asyncio.gather(*(check(c) for c in moved))
        if datetime.now(UTC) >= min(deadlines):
            raise RuntimeError("retargeting took longer than the lead time; raise lead()")
        return moved, unchecked


def lead(count: int, rate: float) -> float:
    """Seconds from now to the first deadline: time to send `count` events and check them at
    `rate` retargets a second (measured on this engine, now), with room to spare."""
    return 20 + 1.5 * count / rate


# --- figures ----------------------------------------------------------------------------------


def line(name: str, values: list[float]) -> str:
    return (
        f"  {name:<40} p50 {h.percentile(values, 0.5):6.3f} s   p99 "
        f"{h.percentile(values, 0.99):6.3f} s   max {max(values, default=math.nan):6.3f} s"
    )


def delays(
    clocks: list[Clock], alerts: AlertWatcher
) -> tuple[list[float], list[float], list[float]]:
    """Per clock with an alert: due -> committed, due -> fired, fired -> committed (seconds)."""
    total, fired, written = [], [], []
    for clock in clocks:
        if clock.task_id not in alerts.alerts:
            continue
        seen, created = alerts.alerts[clock.task_id]
        due = clock.due_at.timestamp()
        total.append(seen - due)
        fired.append(created.timestamp() - due)
        written.append(seen - created.timestamp())
    return total, fired, written


def email_keys(bench: Bench, clocks: list[Clock]) -> dict[str, str]:
    """The delivery key of each of `clocks`' breach emails (as the SMTP sink sees it): its task."""
    keys: dict[str, str] = {}
    with bench.store.engine.connect() as connection:
        for chunk in h.chunks([clock.task_id for clock in clocks]):
            query = select(Alert.key, Alert.task_id).where(
                Alert.level == "breach", col(Alert.task_id).in_(chunk)
            )
            keys.update({f"{key}:email": str(task) for key, task in connection.execute(query)})
    return keys


async def emailed(bench: Bench, clocks: list[Clock], *, patience: float = 120.0) -> str:
    """From due to the arrival of the manager's email at the SMTP sink, once every alert's email
    arrived (or `patience` seconds passed)."""
    keys = email_keys(bench, clocks)
    deadline = time.time() + patience
    while time.time() < deadline and any(key not in bench.smtp.alerts for key in keys):
        await asyncio.sleep(0.2)
    due = {clock.task_id: clock.due_at.timestamp() for clock in clocks}
    arrived = [
        bench.smtp.alerts[key] - due[task] for key, task in keys.items() if key in bench.smtp.alerts
    ]
    return line(f"due -> manager's email ({len(arrived)} of {len(keys)})", arrived)


def count_rows(bench: Bench, clocks: list[Clock]) -> tuple[str, bool]:
    """Alert rows against the clocks that came due: (a line saying so, whether all is well)."""
    counts: dict[str, int] = {}
    with bench.store.engine.connect() as connection:
        for chunk in h.chunks([clock.task_id for clock in clocks]):
            query = (
                select(Alert.task_id, sa.func.count())
                .where(Alert.level == "breach", col(Alert.task_id).in_(chunk))
                .group_by(Alert.task_id)
            )
            counts.update({task: int(n) for task, n in connection.execute(query)})
        every = connection.execute(select(Alert.task_id).where(Alert.level == "breach")).scalars()
        early = sum(1 for task in every if task not in bench.due_so_far)
    lost = sum(1 for clock in clocks if counts.get(clock.task_id, 0) == 0)
    duplicated = sum(1 for n in counts.values() if n > 1)
    rows = sum(counts.values())
    ok = not lost and not duplicated and not early
    return (
        f"alert rows: {rows} for {len(clocks)} clocks due: {lost} lost, {duplicated} duplicated, "
        f"{early} for clocks not due" + ("" if ok else "  <- WRONG"),
        ok,
    )


async def report_alerts(bench: Bench, clocks: list[Clock], breakdown: str) -> float:
    """The delays of `clocks`' alerts (rows and emails), their count; returns the rows' p99."""
    total, fired, written = delays(clocks, bench.alerts)
    counted, _ = count_rows(bench, clocks)
    print(counted)
    print(
        f"breach alerts seen committed: {len(total)} of {len(clocks)} "
        f"(alerts table polled every {bench.args.poll * 1000:.0f} ms or more)"
    )
    print(line("due -> committed (seen by polling)", total))
    print(line("  due -> rung fired (alert created_at)", fired))
    print(line("  rung fired -> committed", written))
    print(await emailed(bench, clocks))
    if breakdown:
        print(breakdown)
    return h.percentile(total, 0.99) if len(total) == len(clocks) else math.inf


def verdict(name: str, met: bool) -> str:
    return f"target {name}: {'met' if met else 'MISSED'}"


def footer(bench: Bench, since: Machine, sent: int) -> None:
    now = bench.machine()
    rss = h.memory_kib(bench.worker_pid)
    print(
        f"this phase: worker CPU {now.worker - since.worker:.0f} s, dev server CPU "
        f"{now.server - since.server:.0f} s over {now.at - since.at:.0f} s; worker RSS "
        f"{h.mb(rss['VmRSS']):.0f} MB (peak so far {h.mb(rss['VmHWM']):.0f} MB); notifications "
        f"delivered {bench.delivered() - sent} ({bench.pending_deliveries()} still queued)",
        flush=True,
    )


def at(event: Any) -> datetime:
    """When a history event happened."""
    return event.event_time.ToDatetime(UTC)  # type: ignore[no-any-return]


def split_history(
    events: Sequence[Any], clock: Clock, seen: float, created: datetime
) -> dict[str, float] | str:
    """One clock's delay split by its history (see `breakdown`); what is missing, if anything."""
    fired = scheduled = began = None
    escalate = ProcessContract.escalate.name
    for event in events:
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_TIMER_FIRED and fired is None:
            if at(event) >= clock.due_at - timedelta(seconds=5):
                fired = event
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED and scheduled is None:
            if event.activity_task_scheduled_event_attributes.activity_type.name == escalate:
                scheduled = event
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED and scheduled is not None:
            if event.activity_task_started_event_attributes.scheduled_event_id == (
                scheduled.event_id
            ):
                began = event
    if fired is None or scheduled is None or began is None:
        timers = [
            f"{(at(e) - clock.due_at).total_seconds():+.1f} s"
            for e in events
            if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED
        ]
        state = "started" if began else "scheduled" if scheduled else "not scheduled"
        return f"timers fired at {', '.join(timers) or 'none'} from due; escalate {state}"
    start = next(
        e for e in events if e.event_id == fired.timer_fired_event_attributes.started_event_id
    )
    meant = at(start) + start.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
    dispatch = (created - at(fired)).total_seconds()
    return {
        "set": (meant - clock.due_at).total_seconds(),
        "timer": (at(fired) - meant).total_seconds(),
        "dispatch": dispatch,
        f"dispatch {dispatch_route(events, fired, scheduled)}": dispatch,
        "queued": (at(began) - at(scheduled)).total_seconds(),
        "run": seen - at(began).timestamp(),
    }


def dispatch_route(events: Sequence[Any], fired: Any, rung: Any) -> str:
    """How the workflow task after a fired timer reached the worker: the queue it was put on
    (`sticky`: the worker that ran the instance last, which may have evicted it since),
    whether an attempt failed or timed out first (`retried`), and whether another activity ran
    before the rung's (`after an activity`: duly before 3d80ae5 wrote a breach's audit first)."""
    after = [e for e in events if e.event_id > fired.event_id]
    detour = any(
        e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        for e in after
        if e.event_id < rung.event_id
    )
    scheduled = next(
        (e for e in after if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED), None
    )
    if scheduled is None:
        return "unknown"
    kind = scheduled.workflow_task_scheduled_event_attributes.task_queue.kind
    route = "sticky" if kind == TaskQueueKind.TASK_QUEUE_KIND_STICKY else "normal"
    retried = any(
        e.event_type
        in (
            EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
            EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
        )
        for e in after[: next((i for i, e in enumerate(after)
                               if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
                              len(after))]
    )  # fmt: skip
    route += ", retried" if retried else ""
    return route + (", after an activity" if detour else "")


async def breakdown(client: Client, clocks: list[Clock], alerts: AlertWatcher) -> str:
    """Where the delay goes, from the histories of a sample of clocks.

    due -> rung fired:
    - set: the timer that fired was started (recorded when its workflow task completed) for a
      duration the workflow computed from `workflow.now()` (when that task started), so it
      fires `set` after the due time;
    - timer: TimerFired's time minus when it was set to fire (the server's timer queue);
    - dispatch: the rung's `fired_at` (the start of the workflow task that ran the rung)
      minus TimerFired; split by the queue that task was put on (`dispatch_route`).

    rung fired -> committed:
    - queued: the `escalate` activity's start minus its scheduling (waiting for a worker slot);
    - run: when this process saw the alert minus the activity's start (the transaction, its
      wait for the database, and up to one poll interval).
    """
    sample = clocks[:: max(1, len(clocks) // SAMPLE)]
    parts: dict[str, list[float]] = {n: [] for n in ("set", "timer", "dispatch", "queued", "run")}
    routes: dict[str, list[float]] = {}
    odd: list[str] = []
    for clock in sample:
        if clock.task_id not in alerts.alerts:
            continue
        seen, created = alerts.alerts[clock.task_id]
        handle = client.get_workflow_handle(workflow_of(clock.instance, task=False))
        try:
            events = (await handle.fetch_history()).events
        except RPCError:
            continue
        split = split_history(events, clock, seen, created)
        if isinstance(split, str):
            odd.append(f"{clock.instance}: {split}")
            continue
        for name, value in split.items():
            if name.startswith("dispatch "):
                routes.setdefault(name.removeprefix("dispatch "), []).append(value)
            else:
                parts[name].append(value)
    lines = [f"  from {len(parts['set'])} histories:"]
    if odd:
        lines.append(
            f"  ({len(odd)} more without a timer fired at due and escalate started: {odd[0]})"
        )
    for name, label in (
        ("set", "timer set late (workflow task)"),
        ("timer", "timer fired late (server)"),
        ("dispatch", "fired -> rung (workflow task)"),
        ("queued", "escalate queued for a worker slot"),
        ("run", "escalate started -> row seen"),
    ):
        lines.append(line(f"  {label}", parts[name]))
        if name == "dispatch":
            for route, values in sorted(routes.items()):
                lines.append(line(f"    its task on the {route} queue ({len(values)})", values))
    return "\n".join(lines)


async def wait_for_alerts(clocks: list[Clock], alerts: AlertWatcher, *, until: float) -> None:
    while time.time() < until and any(c.task_id not in alerts.alerts for c in clocks):
        await asyncio.sleep(0.2)


def expect(bench: Bench, clocks: list[Clock]) -> None:
    """From now on, these clocks are due: their alerts are watched for and counted."""
    bench.alerts.expect(clocks)
    bench.due_so_far.update(clock.task_id for clock in clocks)


def target_for(bench: Bench, deadline: float) -> str:
    """The g-target that makes a clock started now come due at (just after) `deadline`, from
    the recent start latency."""
    latency = bench.latency or 0.0
    target = math.ceil((deadline - time.time() - latency) / SPREAD_GRID) * SPREAD_GRID
    if not SPREAD_GRID <= target <= SPREAD_GRID * SPREAD_KEYS:
        raise RuntimeError(f"target {target} s is outside the bench's g-targets")
    return f"g{target}"


async def open_due(bench: Bench, prefix: str, first: float, step: float, count: int) -> list[Clock]:
    """Open `count` spread clocks due from `first`, one every `step` s (each target chosen when
    its own start begins)."""
    semaphore = asyncio.Semaphore(bench.args.concurrency)

    async def one(j: int) -> Clock:
        async with semaphore:
            due = target_for(bench, first + j * step)
            return await bench.open(SPREAD, f"{prefix}-{j:05d}", due=due)

    return await asyncio.gather(*(one(j) for j in range(count)))


# --- the phases -------------------------------------------------------------------------------


async def spread_phase(bench: Bench, args: argparse.Namespace) -> None:
    """Open `--clocks` clocks: first the far ones, then `--due` ones due over `--window` s."""
    since, sent = bench.machine(), bench.delivered()
    far_count = args.clocks - args.due
    await bench.open_many(FAR_PROCESS, [f"far-{i:05d}" for i in range(far_count)])
    rate = bench.rate or 10.0
    # the due ones open in about due / rate seconds; the window starts after that, with room
    first = time.time() + (bench.latency or 0.0) + args.due / rate * 1.3 + 20
    clocks = await open_due(bench, "due", first, args.window / args.due, args.due)
    all_open = time.time()
    print(bench.speed(since, args.clocks), flush=True)
    dues = [c.due_at.timestamp() for c in clocks]
    print(
        f"all {args.clocks} clocks open after {all_open - since.at:.0f} s (the far ones "
        f"{rate:.1f}/s); the {args.due} due from {min(dues) - all_open:.0f} s after the last "
        f"opened, over {max(dues) - min(dues):.0f} s",
        flush=True,
    )
    expect(bench, clocks)
    await asyncio.sleep(max(0.0, min(dues) - time.time()))
    pending, sent_before = bench.pending_deliveries(), bench.delivered()
    await wait_for_alerts(clocks, bench.alerts, until=max(dues) + 180)
    split = await breakdown(bench.client, clocks, bench.alerts)
    p99 = await report_alerts(bench, clocks, split)
    print(
        f"  meanwhile the deliverer sent {bench.delivered() - sent_before} notifications "
        f"(email or webhook); {pending} were queued when the first came due"
    )
    print(verdict(f"p99 due -> alert row <= {TARGET_P99} s", p99 <= TARGET_P99))
    footer(bench, since, sent)


async def probe_queries(bench: Bench, clocks: list[Clock], rate: float, stop: asyncio.Event) -> str:
    """State queries to random clocks, `rate` a second, until `stop`, and as many instance pages
    (what a manager opening them meets while the storm drains). Timed out or failed queries are
    counted; a page is timed until it has its store record and either the live state or the
    reason it has none, as `duly.api.web.pages.instance_page` asks for them."""
    answered: list[float] = []
    timed_out, refused, failed = 0, 0, []
    shown: list[float] = []
    pages: Counter[str] = Counter()
    chooser = random.Random(1)
    context = ServiceContext(
        settings=Settings(),
        loaded=bench.definitions,
        sessions=session_factory(bench.store.engine),
        temporal=TemporalProvider.of(bench.client),
    )
    admin = Principal(id="bench", name="bench", role="admin")

    async def one(clock: Clock) -> None:
        nonlocal timed_out, refused
        began = time.perf_counter()
        try:
            await asyncio.wait_for(
                duly_client.instance_state(bench.client, clock.instance), QUERY_PATIENCE
            )
        except TimeoutError:
            timed_out += 1
        except duly_client.ClientError as exc:
            problem = str(exc).lower()
            if "timeout" in problem:
                timed_out += 1
            elif "buffer is full" in problem or "exhausted" in problem:
                refused += 1  # the server turned it away: the instance's query buffer was full
            else:
                failed.append(str(exc))
        else:
            answered.append(time.perf_counter() - began)

    async def page(clock: Clock) -> None:
        began = time.perf_counter()
        try:
            detail = await instance_detail(context, admin, clock.instance, wait=PAGE_STATE_WAIT)
        except Exception as exc:  # counted, so the storm's figures still print
            pages[f"failed: {exc}"] += 1
            return
        shown.append(time.perf_counter() - began)
        if detail.state is not None:
            pages["with the live state"] += 1
        elif detail.state_error and "has work queued" in detail.state_error:
            pages["saying the instance has work queued"] += 1
        else:
            pages[f"other: {detail.state_error or detail.instance.status}"] += 1

    asked: list[asyncio.Task[None]] = []
    while not stop.is_set():
        asked.append(asyncio.create_task(one(chooser.choice(clocks))))
        asked.append(asyncio.create_task(page(chooser.choice(clocks))))
        await asyncio.sleep(1 / rate)
    await asyncio.gather(*asked)
    return (
        line(f"state queries while it drained ({len(asked) // 2})", answered)
        + f"\n  of them {timed_out} timed out (the server's limit, or {QUERY_PATIENCE:.0f} s), "
        f"{refused} refused as busy (query buffer full), {len(failed)} failed otherwise"
        + (f" (first: {failed[0]})" if failed else "")
        + "\n"
        + line(f"instance pages while it drained ({len(shown)})", shown)
        + "\n  of them "
        + ", ".join(f"{n} {how}" for how, n in pages.most_common())
    )


async def storm_phase(bench: Bench, args: argparse.Namespace) -> None:
    """Open `--storm` clocks far out, then retarget all of them to come due in one second."""
    since, sent = bench.machine(), bench.delivered()
    keys = [f"storm-{i:05d}" for i in range(args.storm)]
    opened = await bench.open_many(STORM, keys, watched=True)
    # each open here also waits, through state queries, until its clock is watched
    print(bench.speed(since, len(opened)) + " (opened and watched)", flush=True)
    # how fast this engine retargets now (a cached instance is quick, an evicted one replays
    # its history): a sample moves to its farthest target, which the real retarget then
    # brings forward, so nothing comes due out of turn
    sample = opened[:RETARGET_SAMPLE]
    began = time.time()
    farthest = [clock.opened_at + timedelta(seconds=STORM_KEYS) for clock in sample]
    await bench.retarget(sample, farthest, grid=1, prefix="t", keys=STORM_KEYS, round_="probe")
    rate = len(sample) / max(time.time() - began, 1e-3)
    second = datetime.fromtimestamp(math.ceil(time.time() + lead(len(opened), rate)), UTC)
    print(f"retargets at {rate:.1f}/s (a sample of {len(sample)}): due at {second:%H:%M:%S}")
    clocks, unchecked = await bench.retarget(
        opened, [second] * len(opened), grid=1, prefix="t", keys=STORM_KEYS
    )
    print(
        f"{len(clocks)} clocks retargeted to come due in [{second:%H:%M:%S}, +1 s); "
        f"{len(clocks) - unchecked} checked through the state query, {unchecked} could not be",
        flush=True,
    )
    expect(bench, clocks)
    await asyncio.sleep(max(0.0, second.timestamp() - time.time()))
    due = bench.machine()
    drained = asyncio.Event()
    prober = asyncio.create_task(probe_queries(bench, clocks, args.query_rate, drained))
    try:
        await wait_for_alerts(clocks, bench.alerts, until=second.timestamp() + 300)
    finally:
        done = bench.machine()
        drained.set()
        queries = await prober
    seen = [bench.alerts.alerts[c.task_id][0] for c in clocks if c.task_id in bench.alerts.alerts]
    start = second.timestamp()
    if seen:
        print(
            f"first alert {min(seen) - start:.2f} s after the second began, last "
            f"{max(seen) - start:.2f} s after: {len(seen) / max(max(seen) - start, 1e-3):.1f} "
            "breaches/s"
        )
        print(drain_cpu(due, done, len(seen)))
    split = await breakdown(bench.client, clocks, bench.alerts)
    await report_alerts(bench, clocks, split)
    print(queries)
    footer(bench, since, sent)


def drain_cpu(due: Machine, done: Machine, breaches: int) -> str:
    """The CPU the worker, the dev server and this bench spent from the due second to the
    last alert."""
    worker, server = done.worker - due.worker, done.server - due.server
    return (
        f"the drain, due second to last alert seen: worker CPU {worker:.1f} s, dev server CPU "
        f"{server:.1f} s over {done.at - due.at:.1f} s; {worker / breaches * 1000:.1f} and "
        f"{server / breaches * 1000:.1f} ms a breach; this bench (watching, querying, drawing "
        f"pages) {done.bench - due.bench:.1f} s"
    )


async def backfill_phase(bench: Bench, args: argparse.Namespace) -> None:
    """`--live` clocks due over `--live-window` s while `--backfill` instances start."""
    since, sent = bench.machine(), bench.delivered()
    rate = bench.rate or 10.0
    # the live clocks open first; the backfill begins once they are, and runs alone for
    # `--alone` seconds before the first comes due
    first = time.time() + (bench.latency or 0.0) + args.live / rate * 1.3 + 10 + args.alone
    live = await open_due(bench, "live", first, args.live_window / args.live, args.live)
    expect(bench, live)
    dues = [c.due_at.timestamp() for c in live]
    began = bench.machine()
    opened: list[float] = []
    at_first_due: list[Machine] = []

    async def one(i: int) -> None:
        await bench.open(FAR_PROCESS, f"fill-{i:05d}", priority=BULK)  # as `duly import` does
        opened.append(time.time())

    async def sample_at_first_due() -> None:
        await asyncio.sleep(max(0.0, min(dues) - time.time()))
        at_first_due.append(bench.machine())

    sampler = asyncio.create_task(sample_at_first_due())
    semaphore = asyncio.Semaphore(args.concurrency)

    async def bounded(i: int) -> None:
        async with semaphore:
            await one(i)

    backfill = asyncio.gather(*(bounded(i) for i in range(args.backfill)))
    print(
        f"{len(live)} live clocks open, due from {min(dues) - began.at:.0f} s after the backfill "
        f"began, over {max(dues) - min(dues):.0f} s",
        flush=True,
    )
    await wait_for_alerts(live, bench.alerts, until=max(dues) + 180)
    await backfill
    ended = time.time()
    await sampler
    alone_end, window_end = min(dues), min(max(dues), ended)
    alone = sum(1 for t in opened if t < alone_end)
    during = sum(1 for t in opened if alone_end <= t <= window_end)
    after = sum(1 for t in opened if t > window_end)
    alone_rate = alone / max(alone_end - began.at, 1e-3)
    during_rate = during / max(window_end - alone_end, 1e-3)
    after_rate = after / max(ended - window_end, 1e-3)
    # Alone before: the worker's cache still filling; alone after: full, each start-up evicting.
    # The share is taken against the faster of the two, the stricter comparison.
    best_alone = max(alone_rate, after_rate)
    share = during_rate / best_alone if best_alone else math.nan
    first_due = at_first_due[0]
    print(
        f"machine: {alone_rate:.1f} instances opened/s alone; CPU per opened instance alone: "
        f"worker {(first_due.worker - began.worker) / max(alone, 1):.3f} s, dev server "
        f"{(first_due.server - began.server) / max(alone, 1):.3f} s"
    )
    print(
        f"backfill: {args.backfill} instances opened in {ended - began.at:.0f} s "
        f"({args.backfill / (ended - began.at):.1f}/s overall)"
    )
    print(
        f"  alone, before the first live clock came due: {alone} in {alone_end - began.at:.0f} s,"
        f" {alone_rate:.1f}/s"
    )
    print(
        f"  while the live clocks came due: {during} in {window_end - alone_end:.0f} s, "
        f"{during_rate:.1f}/s"
        + ("" if ended >= max(dues) else " (the backfill ended before the last came due)")
    )
    if after:
        print(
            f"  alone again, after the last came due: {after} in {ended - window_end:.0f} s, "
            f"{after_rate:.1f}/s"
        )
    print(f"  while they came due, {share:.2f} of the faster alone rate", flush=True)
    split = await breakdown(bench.client, live, bench.alerts)
    p99 = await report_alerts(bench, live, split)
    print(verdict(f"p99 due -> alert row <= {TARGET_P99} s", p99 <= TARGET_P99))
    print(
        verdict(f"backfill >= {TARGET_BACKFILL_SHARE:.0%} of alone", share >= TARGET_BACKFILL_SHARE)
    )
    footer(bench, since, sent)


PHASES = (("spread", spread_phase), ("storm", storm_phase), ("backfill", backfill_phase))


def heading(name: str, args: argparse.Namespace) -> str:
    return {
        "spread": f"{args.clocks} open clocks, {args.due} due over {args.window:.0f} s",
        "storm": f"{args.storm} clocks due in the same second",
        "backfill": (
            f"{args.backfill} instances started as fast as the engine takes them; "
            f"{args.live} live clocks due over {args.live_window:.0f} s meanwhile"
        ),
    }[name]


async def bench(args: argparse.Namespace) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    chosen = [
        (name, phase)
        for name, phase in PHASES
        if {"spread": args.clocks, "storm": args.storm, "backfill": args.backfill}[name]
    ]
    with (
        tempfile.TemporaryDirectory(prefix="duly-bench-") as tmp,
        h.SmtpSink() as smtp,
        h.store(args.db, Path(tmp)) as store,
    ):
        async with h.HttpSink() as webhooks:
            folder = Path(tmp)
            code = h.snapshot_code(folder)
            definitions_dir = write_definitions(
                folder, webhooks.port, quiet_reps=args.backlog == "empty"
            )
            definitions = load_definitions(definitions_dir)
            print(
                f"breach_latency: {store.kind} store ({store.where}); deliverer backlog "
                f"{args.backlog}; {os.cpu_count()} CPUs, load average "
                f"{os.getloadavg()[0]:.1f}; Python {platform.python_version()}; "
                f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
                flush=True,
            )
            async with h.dev_server(folder) as (server, client):
                assert server.process is not None
                task_queue = "bench-breach"
                worker = h.Subprocess(
                    h.python(str(code / "worker.py")),
                    env=h.worker_env(
                        code=code,
                        address=server.address,
                        task_queue=task_queue,
                        database=store.url,
                        definitions=definitions_dir,
                        smtp_port=smtp.port,
                    ),
                    log=folder / "worker.log",
                )
                tasks = h.TaskOpenings(store.engine, interval=0.05)
                alerts = AlertWatcher(store.engine, args.poll)
                watching = [asyncio.create_task(tasks.run()), asyncio.create_task(alerts.run())]
                try:
                    await worker.start()
                    try:
                        await worker.wait_for_line("worker running")
                    except RuntimeError as exc:  # say how the server stood, to tell why
                        exit_code = server.process.returncode
                        state = "running" if exit_code is None else f"exited with code {exit_code}"
                        raise RuntimeError(
                            f"{exc}\nthe dev server at {server.address}: {state}; its log ends "
                            f"with:\n{server.log_tail(lines=30)}"
                        ) from None
                    run = Bench(
                        client,
                        definitions,
                        task_queue,
                        store,
                        tasks,
                        alerts,
                        smtp,
                        webhooks,
                        worker.pid,
                        server.process.pid,
                        args,
                    )
                    for name, phase in chosen:
                        print(f"\n== {name}: {heading(name, args)}", flush=True)
                        try:
                            await phase(run, args)
                        except Exception:  # the next phase still runs and prints its figures
                            print(f"{name} phase FAILED:", flush=True)
                            traceback.print_exc(file=sys.stdout)
                        sys.stdout.flush()
                finally:
                    tasks.stop()
                    alerts.running = False
                    await asyncio.gather(*watching)
                    await worker.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument(
        "--backlog",
        choices=("full", "empty"),
        default="full",
        help="empty: reps have no channels, so the deliverer sends alerts only",
    )
    parser.add_argument("--clocks", type=int, default=10_000, help="spread: clocks open")
    parser.add_argument("--due", type=int, default=2_000, help="spread: of them, due")
    parser.add_argument(
        "--window", type=float, default=300.0, help="spread: seconds the due ones spread over"
    )
    parser.add_argument("--storm", type=int, default=1_000, help="storm: clocks due at once")
    parser.add_argument(
        "--query-rate", type=float, default=5.0, help="storm: state queries a second"
    )
    parser.add_argument("--backfill", type=int, default=10_000, help="backfill: instances")
    parser.add_argument("--live", type=int, default=200, help="backfill: live clocks due")
    parser.add_argument(
        "--live-window", type=float, default=120.0, help="backfill: seconds they come due over"
    )
    parser.add_argument(
        "--alone", type=float, default=60.0, help="backfill: seconds it runs before the first"
    )
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--poll", type=float, default=0.025, help="seconds between alert polls")
    args = parser.parse_args()
    if args.clocks and not 0 < args.due <= args.clocks:
        parser.error("--due is part of --clocks (at least 1)")
    h.run(bench(args))


if __name__ == "__main__":
    main()
