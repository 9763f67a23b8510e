"""How late is a breach alert? 10,000 open SLA clocks, 2,000 of them coming due over 5 minutes,
then a storm of 1,000 coming due in the same second.

Runs the embedded dev server (as `duly up` starts it) and `python worker.py` as a subprocess
(with DULY_* pointing at a temporary SQLite store and a temporary definitions folder holding
copies of the shipped calendars, org and templates plus three bench-only processes). Each instance
opens one task whose wall-clock SLA is chosen by the instance data
(`within: {by: "{{ due }}", ...}`) with the ladder `[{at: 100%, notify: manager}]`: at the due
time the workflow records the breach and the `escalate` activity writes one alert row for the
manager.

The delay measured is from each clock's exact due time to the moment its alert row is committed,
as seen by this process polling duly's `alerts` table (SQLite, WAL: a reader sees a row once its
transaction committed and never blocks the writer) every `--poll` seconds. The row's own
`created_at` is not the insert time: `escalate` stores the rung's `fired_at`, the workflow's
`workflow.now()` when the timer fired, so it splits the delay in two: due -> rung fired (the
server's timer and the workflow task) and rung fired -> row committed (the activity).

Spread: deadlines are set relative to when each clock starts, and all fall after every instance
is open: first the 8,000 `breach-far` instances (due in 30 days) start as fast as the worker opens
them (at most `--concurrency` not yet open); then the 2,000 `breach-spread` ones, each started with
`due: g<n>` in its data, `n` (a multiple of 10 s) chosen from the recent start latency so that
the clock, counting from its own start, comes due at its place in the 5-minute window that begins
once all are expected to be open. The exact due time of each is read back from the task row
`open_task` wrote (`due_at`), and the delays are measured from it.

Storm: 1,000 more `breach-storm` instances open with the far target; once all are open, an event
for each sets a target of whole seconds, `ceil(D - opened_at)`, so every clock comes due in the
same second `[D, D + 1)`.

Usage: .venv/bin/python bench/breach_latency.py [--clocks 10000] [--due 2000] [--window 300]
                                                [--storm 1000] [--concurrency 200] [--poll 0.025]
(about 15-18 minutes at the defaults on 2 CPUs; scale down with e.g. --clocks 1000 --due 200
--window 60 --storm 200 to try it)
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import _harness as h
import structlog
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from duly import client as duly_client
from duly.language.loader import Definitions, load_definitions
from workflows.contracts import ProcessContract
from workflows.messages import EventInput, InstanceState, workflow_of

FAR_PROCESS = "breach-far"
SPREAD = "breach-spread"
STORM = "breach-storm"
STEP = "wait"
FAR = "30 days"
SPREAD_GRID, SPREAD_KEYS = 10, 240  # spread targets g10..g2400: every 10 seconds
STORM_KEYS = 200  # storm targets t1..t200: whole seconds
TARGET_P99 = 2.0
SEND_CONCURRENCY = 2  # retarget events in flight
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


def write_definitions(folder: Path, webhooks: int) -> Path:
    """Shipped calendars, org and templates, and the three bench processes."""
    definitions = h.copy_definitions(folder, webhooks=webhooks, processes=False)
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


class AlertWatcher:
    """Stamps each alert row with the wall time this process first saw it committed."""

    def __init__(self, database: Path, interval: float) -> None:
        self.poller = h.TablePoller(
            database,
            "SELECT rowid, instance_id, created_at, level FROM alerts WHERE rowid > ? "
            "ORDER BY rowid",
        )
        self.interval = interval
        self.alerts: dict[str, tuple[float, datetime]] = {}  # instance -> (seen, created_at)
        self.running = True

    async def run(self) -> None:
        while self.running:
            for seen, (_, instance, created, level) in self.poller.poll():
                if level == "breach":
                    self.alerts.setdefault(instance, (seen, h.utc(created)))
            await asyncio.sleep(self.interval)
        self.poller.close()


@dataclass
class Clock:
    """One instance and its task: when it opened and when its SLA is due."""

    instance: str
    task_id: str
    opened_at: datetime
    due_at: datetime


@dataclass
class Bench:
    client: Client
    definitions: Definitions
    task_queue: str
    tasks: h.TaskWatcher
    alerts: AlertWatcher
    opened_times: list[float] = field(default_factory=list)
    breakdowns: dict[str, str] = field(default_factory=dict)
    latency: float | None = None
    sinks: tuple[h.SmtpSink, h.HttpSink] | None = None
    database: Path | None = None

    def delivered(self) -> int:
        """Notifications the sinks have received so far."""
        assert self.sinks is not None
        return self.sinks[0].received + self.sinks[1].received

    def pending_deliveries(self) -> int:
        """Notifications queued in duly's outbox (`deliveries`) and not yet sent."""
        assert self.database is not None
        with sqlite3.connect(self.database, timeout=30) as db:
            row = db.execute("SELECT count(*) FROM deliveries WHERE status = 'pending'").fetchone()
        return int(row[0])

    async def open(
        self, process: str, key: str, *, due: str | None = None, watched: bool = False
    ) -> Clock:
        """Start an instance (with `due` in its data, if given) and wait until its task is open
        (and, if `watched`, until the workflow watches its clock: the task row is committed
        before the workflow has taken in `open_task`'s result, and an event in between would not
        retarget the clock)."""
        data = {"id": key, "owner": "ana", **({"due": due} if due else {})}
        began = time.time()
        instance = await duly_client.start_instance(
            self.client, self.definitions, process, data, task_queue=self.task_queue
        )
        task_id = f"{instance}/{STEP}/1"
        seen, opened, due_at = await self.tasks.opened(task_id, timeout=600)
        assert due_at is not None
        clock = Clock(instance, task_id, opened, due_at)
        while watched and f"step:{STEP}" not in (await self.state(clock)).clocks:
            await asyncio.sleep(0.2)
        self.opened_times.append(time.time())
        # how long from asking to the clock starting, lately: due times are chosen with it
        started = opened.timestamp() - began
        self.latency = started if self.latency is None else 0.9 * self.latency + 0.1 * started
        return clock

    async def state(self, clock: Clock) -> InstanceState:
        handle = self.client.get_workflow_handle(workflow_of(clock.instance, task=False))
        result: InstanceState = await handle.query(
            duly_client.STATE_QUERY, result_type=InstanceState
        )
        return result

    async def retarget(
        self, clocks: list[Clock], deadlines: list[datetime], *, grid: int, prefix: str, keys: int
    ) -> list[Clock]:
        """Make each clock due at (just after) its deadline: an event picks the target
        `ceil((deadline - opened_at) / grid) * grid` seconds; every due time is then checked
        through the `state` query. Returns the clocks with their new due times."""
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
        semaphore = asyncio.Semaphore(SEND_CONCURRENCY)

        async def send(clock: Clock) -> None:
            async with semaphore:
                target = round((clock.due_at - clock.opened_at).total_seconds())
                handle = self.client.get_workflow_handle(workflow_of(clock.instance, task=False))
                event = EventInput(
                    id=f"due-{clock.instance}", type="bench.due", data={"due": f"{prefix}{target}"}
                )
                await handle.signal(duly_client.EVENT_SIGNAL, event)

        async def check(clock: Clock) -> None:
            async with semaphore:
                for _ in range(50):
                    actual = (await self.state(clock)).clocks[f"step:{STEP}"].due_at
                    if actual == clock.due_at:
                        return
                    await asyncio.sleep(0.2)
                raise RuntimeError(f"{clock.instance}: due {actual}, expected {clock.due_at}")

        await asyncio.gather(*(send(c) for c in moved))
        semaphore = asyncio.Semaphore(200)
        await asyncio.gather(*(check(c) for c in moved))
        if datetime.now(UTC) >= min(deadlines):
            raise RuntimeError("retargeting took longer than the lead time; raise LEAD")
        return moved


def lead(count: int) -> float:
    """Seconds from now to the first deadline: time to send `count` events and check them."""
    return 20 + count / 25


async def breakdown(client: Client, clocks: list[Clock], alerts: AlertWatcher) -> str:
    """Where the delay goes, from the histories of a sample of clocks.

    due -> rung fired:
    - set: the timer that fired was started (recorded when its workflow task completed) for a
      duration the workflow computed from `workflow.now()` (when that task started), so it
      fires `set` after the due time;
    - timer: TimerFired's time minus when it was set to fire (the server's timer queue);
    - dispatch: the rung's `fired_at` (the next workflow task's start) minus TimerFired.

    rung fired -> committed:
    - queued: the `escalate` activity's start minus its scheduling (waiting for a worker slot);
    - run: when this process saw the alert minus the activity's start (the transaction, its
      wait for SQLite's write lock, and up to one poll interval).
    """
    sample = clocks[:: max(1, len(clocks) // SAMPLE)]
    parts: dict[str, list[float]] = {n: [] for n in ("set", "timer", "dispatch", "queued", "run")}
    for clock in sample:
        if clock.instance not in alerts.alerts:
            continue
        seen, created = alerts.alerts[clock.instance]
        handle = client.get_workflow_handle(workflow_of(clock.instance, task=False))
        events = (await handle.fetch_history()).events
        by_id = {e.event_id: e for e in events}

        def at(event: Any) -> datetime:
            return event.event_time.ToDatetime(UTC)  # type: ignore[no-any-return]

        fired = next(
            e
            for e in events
            if e.event_type == EventType.EVENT_TYPE_TIMER_FIRED
            and at(e) >= clock.due_at - timedelta(seconds=5)
        )
        start = by_id[fired.timer_fired_event_attributes.started_event_id]
        meant = at(start) + start.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        escalate = ProcessContract.escalate.name
        scheduled = next(
            e
            for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
            and e.activity_task_scheduled_event_attributes.activity_type.name == escalate
        )
        began = next(
            e
            for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
            and e.activity_task_started_event_attributes.scheduled_event_id == scheduled.event_id
        )
        parts["set"].append((meant - clock.due_at).total_seconds())
        parts["timer"].append((at(fired) - meant).total_seconds())
        parts["dispatch"].append((created - at(fired)).total_seconds())
        parts["queued"].append((at(began) - at(scheduled)).total_seconds())
        parts["run"].append(seen - at(began).timestamp())
    lines = [f"  from {len(parts['set'])} histories:"]
    for name, label in (
        ("set", "timer set late (workflow task)"),
        ("timer", "timer fired late (server)"),
        ("dispatch", "fired -> rung (workflow task)"),
        ("queued", "escalate queued for a worker slot"),
        ("run", "escalate started -> row seen"),
    ):
        lines.append(line(f"  {label}", parts[name]))
    return "\n".join(lines)


def delays(
    clocks: list[Clock], alerts: AlertWatcher
) -> tuple[list[float], list[float], list[float]]:
    """Per clock with an alert: due -> committed, due -> fired, fired -> committed (seconds)."""
    total, fired, written = [], [], []
    for clock in clocks:
        if clock.instance not in alerts.alerts:
            continue
        seen, created = alerts.alerts[clock.instance]
        due = clock.due_at.timestamp()
        total.append(seen - due)
        fired.append(created.timestamp() - due)
        written.append(seen - created.timestamp())
    return total, fired, written


def line(name: str, values: list[float]) -> str:
    return (
        f"  {name:<40} p50 {h.percentile(values, 0.5):6.3f} s   p99 "
        f"{h.percentile(values, 0.99):6.3f} s   max {max(values, default=math.nan):6.3f} s"
    )


async def wait_for_alerts(clocks: list[Clock], alerts: AlertWatcher, *, until: float) -> None:
    while time.time() < until and any(c.instance not in alerts.alerts for c in clocks):
        await asyncio.sleep(0.2)


async def spread_phase(bench: Bench, args: argparse.Namespace) -> list[Clock]:
    """Open `--clocks` clocks: first the far ones, then `--due` ones due over `--window` s."""
    semaphore = asyncio.Semaphore(args.concurrency)
    began = time.time()

    async def far(i: int) -> None:
        async with semaphore:
            await bench.open(FAR_PROCESS, f"far-{i:05d}")

    far_count = args.clocks - args.due
    await asyncio.gather(*(far(i) for i in range(far_count)))
    recent = sorted(bench.opened_times)[-min(far_count, 2000) :]
    rate = (len(recent) - 1) / max(recent[-1] - recent[0], 1e-3)
    # the due ones open in about due / rate seconds; the window starts after that, with room
    first = time.time() + args.due / rate * 1.3 + 20
    step = args.window / args.due

    async def due(j: int) -> Clock:
        async with semaphore:
            deadline = first + j * step
            latency = bench.latency or 0.0
            target = math.ceil((deadline - time.time() - latency) / SPREAD_GRID) * SPREAD_GRID
            if not SPREAD_GRID <= target <= SPREAD_GRID * SPREAD_KEYS:
                raise RuntimeError(f"target {target} s is outside the bench's g-targets")
            return await bench.open(SPREAD, f"due-{j:05d}", due=f"g{target}")

    clocks = await asyncio.gather(*(due(j) for j in range(args.due)))
    all_open = max(bench.opened_times)
    dues = [c.due_at.timestamp() for c in clocks]
    print(
        f"all {args.clocks} clocks open after {all_open - began:.0f} s "
        f"({args.clocks / (all_open - began):.1f}/s, far ones last {rate:.1f}/s); the "
        f"{args.due} due from {min(dues) - all_open:.0f} s after the last opened, "
        f"over {max(dues) - min(dues):.0f} s",
        file=sys.stderr,
    )
    await asyncio.sleep(max(0.0, min(dues) - time.time()))
    pending, sent = bench.pending_deliveries(), bench.delivered()
    await wait_for_alerts(clocks, bench.alerts, until=max(dues) + 180)
    bench.breakdowns["spread"] = await breakdown(bench.client, clocks, bench.alerts) + (
        f"\n  meanwhile the worker's notification deliverer sent {bench.delivered() - sent} "
        f"notifications (email or webhook); {pending} were waiting when the first came due"
    )
    return clocks


async def storm_phase(bench: Bench, args: argparse.Namespace) -> tuple[list[Clock], datetime]:
    """Open `--storm` clocks far out, then retarget all of them to come due in one second."""
    semaphore = asyncio.Semaphore(args.concurrency)

    async def one(i: int) -> Clock:
        async with semaphore:
            return await bench.open(STORM, f"storm-{i:05d}", watched=True)

    opened = await asyncio.gather(*(one(i) for i in range(args.storm)))
    second = datetime.fromtimestamp(math.ceil(time.time() + lead(len(opened))), UTC)
    clocks = await bench.retarget(
        opened, [second] * len(opened), grid=1, prefix="t", keys=STORM_KEYS
    )
    print(
        f"storm: {len(clocks)} clocks retargeted and checked to come due in "
        f"[{second:%H:%M:%S}, +1 s)",
        file=sys.stderr,
    )
    await wait_for_alerts(clocks, bench.alerts, until=second.timestamp() + 300)
    bench.breakdowns["storm"] = await breakdown(bench.client, clocks, bench.alerts)
    return clocks, second


def report_spread(
    clocks: list[Clock], alerts: AlertWatcher, args: argparse.Namespace, breakdown: str
) -> bool:
    total, fired, written = delays(clocks, alerts)
    dues = [c.due_at.timestamp() for c in clocks]
    print(
        f"open SLA clocks: {args.clocks} ({args.clocks - args.due} due in {FAR}, "
        f"{args.due} due over {max(dues) - min(dues):.0f} s)"
    )
    print(
        f"breach alerts committed: {len(total)} of {len(clocks)} "
        f"(alerts table polled every {args.poll * 1000:.0f} ms)"
    )
    print("delay from the deadline to the alert row committed:")
    print(line("due -> committed (seen by polling)", total))
    print(line("  due -> rung fired (alert created_at)", fired))
    print(line("  rung fired -> committed", written))
    print(breakdown)
    met = len(total) == len(clocks) and h.percentile(total, 0.99) <= TARGET_P99
    print(f"target p99 <= {TARGET_P99} s: {'met' if met else 'MISSED'}")
    return met


def report_storm(
    clocks: list[Clock], second: datetime, alerts: AlertWatcher, breakdown: str
) -> None:
    total, fired, written = delays(clocks, alerts)
    seen = [alerts.alerts[c.instance][0] for c in clocks if c.instance in alerts.alerts]
    start = second.timestamp()
    print(f"storm: {len(clocks)} clocks due in the same second; {len(seen)} alerts committed")
    if not seen:
        return
    print(
        f"  first alert {min(seen) - start:6.2f} s after the second began, "
        f"last {max(seen) - start:6.2f} s after"
    )
    print(line("due -> committed", total))
    print(line("  due -> rung fired", fired))
    print(line("  rung fired -> committed", written))
    print(breakdown)
    print(
        f"  breaches/s sustained (alerts / (last - second began)): "
        f"{len(seen) / (max(seen) - start):6.1f}"
    )


async def bench(args: argparse.Namespace) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with (
        tempfile.TemporaryDirectory(prefix="duly-bench-") as tmp,
        h.SmtpSink() as smtp,
    ):
        async with h.HttpSink() as webhooks:
            folder = Path(tmp)
            code = h.snapshot_code(folder)
            definitions_dir = write_definitions(folder, webhooks.port)
            definitions = load_definitions(definitions_dir)
            database = folder / "duly.db"
            async with h.dev_server(folder) as (server, client):
                assert server.process is not None
                task_queue = "bench-breach"
                worker = h.Subprocess(
                    h.python(str(code / "worker.py")),
                    env=h.worker_env(
                        code=code,
                        address=server.address,
                        task_queue=task_queue,
                        database=database,
                        definitions=definitions_dir,
                        smtp_port=smtp.port,
                    ),
                    log=folder / "worker.log",
                )
                tasks = h.TaskWatcher(database, interval=0.05)
                alerts = AlertWatcher(database, args.poll)
                watching = [asyncio.create_task(tasks.run()), asyncio.create_task(alerts.run())]
                try:
                    await worker.start()
                    await worker.wait_for_line("worker running")
                    bench = Bench(client, definitions, task_queue, tasks, alerts)
                    bench.sinks, bench.database = (smtp, webhooks), database
                    cpu = (h.cpu_seconds(worker.pid), h.cpu_seconds(server.process.pid))
                    spread = await spread_phase(bench, args)
                    storm, second = await storm_phase(bench, args) if args.storm else ([], None)
                    used = (
                        h.cpu_seconds(worker.pid) - cpu[0],
                        h.cpu_seconds(server.process.pid) - cpu[1],
                    )
                    rss = h.memory_kib(worker.pid)
                finally:
                    tasks.stop()
                    alerts.running = False
                    await asyncio.gather(*watching)
                    await worker.stop()
    report_spread(spread, alerts, args, bench.breakdowns.get("spread", ""))
    if second is not None:
        print()
        report_storm(storm, second, alerts, bench.breakdowns.get("storm", ""))
    print()
    print(
        f"worker CPU {used[0]:.0f} s, dev server CPU {used[1]:.0f} s over the run; "
        f"worker peak RSS {h.mb(rss['VmHWM']):.0f} MB"
    )
    print(
        f"notifications the worker delivered meanwhile: {smtp.received} emails, "
        f"{webhooks.received} webhook calls"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clocks", type=int, default=10_000)
    parser.add_argument("--due", type=int, default=2_000)
    parser.add_argument(
        "--window", type=float, default=300.0, help="seconds the due ones spread over"
    )
    parser.add_argument("--storm", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--poll", type=float, default=0.025, help="seconds between alert polls")
    args = parser.parse_args()
    h.run(bench(args))


if __name__ == "__main__":
    main()
