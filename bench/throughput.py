"""How many quote-follow-up instances per second does duly run to the end, next to a hand-written
Temporal workflow doing the same work on the same server, with the same worker, in the same run?

Both sides run on one embedded dev server (started as `duly up` starts it), each with a worker
subprocess built by `duly.worker.build_worker` (same thread pool, same sandbox, same limits; the
hand-written side only swaps the workflow class) on a fresh SQLite store, and an aiosmtpd sink
that really receives each summary email.

- duly: the shipped `quote-follow-up` definition, started with `duly.client.start_instance`; the
  bench completes `call-customer` with `reached` through `duly.client.complete_task`; the
  instance then emails the summary, takes `check-size` -> `won` and ends.
- hand-written: `HandWrittenQuoteFollowUp` below, the workflow one would write for this one
  process without duly: the same `ProcessActivities` methods, called through the same contract
  (`workflows.contracts`: names, models, timeouts and retries), in the same order, the same number
  of times, the same update (with a validator) to complete the task, and the SLA ladder as one
  durable timer raced against the completion.

The bench checks that both sides execute the same activity sequence (read from one instance's
history) and prints it. Every side first runs a few unmeasured warm-up instances. With `--rounds
2` the sides run in the order A B B A, so a server that slows as its database grows favours
neither. With `--profile`, a third side runs: the hand-written workflow carrying the compiled
definition as duly does (as workflow input and into `start_instance`), isolating what the
definition payload costs from what the interpreter costs.

Usage: .venv/bin/python bench/throughput.py [--instances 300] [--concurrency 200] [--rounds 1]
                                            [--profile]
"""

from __future__ import annotations

from temporalio import workflow

# The workflow below runs in the sandbox, which re-imports this module for every instance: its
# imports are passed through, as in duly's own workflow module.
with workflow.unsafe.imports_passed_through():
    import argparse
    import asyncio
    import contextlib
    import functools
    import json
    import logging
    import math
    import statistics
    import sys
    import tempfile
    import time
    from collections.abc import AsyncIterator, Iterator
    from concurrent.futures import ThreadPoolExecutor
    from dataclasses import dataclass, field
    from functools import partial
    from pathlib import Path
    from typing import Any

    import _harness as h
    import structlog
    from pydantic import BaseModel
    from temporalio.api.enums.v1 import EventType
    from temporalio.client import Client, WorkflowHistory, WorkflowUpdateFailedError
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.exceptions import ApplicationError
    from temporalio.worker import Replayer, Worker, WorkflowRunner

    from activities.messages import (
        CloseTaskInput,
        EscalateInput,
        FinishInstanceInput,
        OpenTaskInput,
        RecordSlaEventsInput,
        RecordStepInput,
        RunActionInput,
        SlaEvent,
        SlaEventKind,
        StartInstanceInput,
        StepWrites,
    )
    from duly import client as duly_client
    from duly.language import business_time
    from duly.language.business_time import BusinessCalendar
    from duly.language.durations import parse_duration
    from duly.language.loader import Definitions, load_definitions
    from workflows.contracts import ProcessContract
    from workflows.messages import (
        CompleteTaskInput,
        CompleteTaskResult,
        ProcessResult,
        instance_id,
        workflow_of,
    )
    from workflows.process import ProcessWorkflow

PROCESS = "quote-follow-up"
HAND_WORKFLOW = "HandWrittenQuoteFollowUp"
SIDES = {"hand": "hand-written", "duly": "duly", "hand+def": "hand-written + definition"}
CACHED = "duly, templates cached"
WARMUP = 20
TARGET_RATIO = 0.95  # issue 12: within 5% of the same work written by hand
INSTANCE_TIMEOUT = 300.0  # seconds an instance may take end to end before the bench gives up


# --- the hand-written workflow ----------------------------------------------------------------


class HandInput(BaseModel):
    """What the hand-written workflow starts from: the quote's data and its calendar."""

    business_key: str
    data: dict[str, Any]
    calendar: BusinessCalendar
    process: str
    version: int
    hash: str
    # Only the `hand+def` side fills these, to carry the definition as duly does
    definition_json: str = ""
    source: str = ""


CALL = "call-customer"
OUTCOMES = {"reached": "send-summary", "voicemail": "wait-a-day", "lost": "lost"}
LADDER = [(0.75, "assignee", None), (1.0, "manager", None), (1.5, None, "manager")]
SLA = "2 business days"


@workflow.defn(name=HAND_WORKFLOW)
class HandWrittenQuoteFollowUp:
    """Quote follow-up written by hand for the path the bench drives (reached -> won)."""

    def __init__(self) -> None:
        self.task_id: str | None = None
        self.completion: CompleteTaskInput | None = None
        # what is left to write: carried by the next activity, as duly's interpreter does
        self.writes = StepWrites()

    @workflow.run
    async def run(self, input: HandInput) -> ProcessResult:
        info = workflow.info()
        instance = instance_id(info.workflow_id, info.first_execution_run_id)
        data = input.data
        # the start rides on the first activity that writes, as duly's interpreter does
        self.writes.start = StartInstanceInput(
            instance_id=instance,
            workflow_id=info.workflow_id,
            process=input.process,
            version=input.version,
            hash=input.hash,
            business_key=input.business_key,
            source=input.source,
            compiled_json=input.definition_json,
            data=data,
            started_at=workflow.now(),
        )

        # call-customer: a task with a three-rung ladder over two business days
        opened = workflow.now()
        sla = parse_duration(SLA)
        due = business_time.add(input.calendar, opened, sla)
        total = business_time.elapsed(input.calendar, opened, due).total_seconds()
        task_id = f"{instance}/{CALL}/1"
        title = f"Call {data['contact']['name']} about quote {data['quote']['number']}"
        self._clock(instance, 0, "start", opened, due, f"within {SLA}")
        task = await ProcessContract.open_task.run(
            OpenTaskInput(
                task_id=task_id,
                instance_id=instance,
                process=input.process,
                step=CALL,
                visit=1,
                title=title,
                assign="owner",
                team="inbound-sales",
                owner=data.get("owner"),
                outcomes=list(OUTCOMES),
                opened_at=opened,
                due_at=due,
                writes=self._take_writes(),
            ),
        )
        self.task_id = task_id  # completable from now on, as duly's task is
        rungs = 0
        for rung, (share, notify, reassign) in enumerate(LADDER):
            at = (
                due
                if share == 1
                else business_time.add_business_seconds(input.calendar, opened, share * total)
            )
            try:
                await workflow.wait_condition(
                    lambda: self.completion is not None,
                    timeout=max((at - workflow.now()).total_seconds(), 0.001),
                )
                break
            except TimeoutError:
                rungs = rung + 1
                await ProcessContract.escalate.run(
                    EscalateInput(
                        alert_key=f"{instance}/step:{CALL}/1/{rung}",
                        instance_id=instance,
                        process=input.process,
                        step=CALL,
                        clock=f"step:{CALL}",
                        rung=rung,
                        at_percent=share * 100,
                        level="warning" if share < 1 else "breach" if share == 1 else "escalation",
                        notify=notify,
                        reassign=reassign,
                        task_id=task_id,
                        assignee=task.assignee,
                        team=task.team,
                        due_at=due,
                        fired_at=workflow.now(),
                        title=title,
                    ),
                )
        await workflow.wait_condition(lambda: self.completion is not None)
        completion = self.completion
        assert completion is not None
        closed = workflow.now()
        self.task_id = None
        self.writes.closes.append(
            CloseTaskInput(
                task_id=task_id,
                status="completed",
                outcome=completion.outcome,
                note=completion.note,
                closed_by=completion.by,
                closed_at=closed,
            ),
        )
        met = closed <= due
        self._clock(instance, 1, "stop", closed, due, "met" if met else "breached")
        self._record(
            input,
            instance,
            CALL,
            "task",
            opened,
            closed,
            completion.outcome,
            assignee=task.assignee,
            team=task.team,
            due=due,
            met=met,
            rungs=rungs,
        )
        if completion.outcome != "reached":
            raise ApplicationError("the bench only drives the 'reached' path")

        # send-summary: the email action
        began = workflow.now()
        quote, contact = data["quote"], data["contact"]
        await ProcessContract.run_action.run(
            RunActionInput(
                action="email",
                instance_id=instance,
                step="send-summary",
                visit=1,
                params={
                    "to": contact["email"],
                    "subject": f"Your quote {quote['number']} - summary of our call",
                    "body": summary_body(quote, contact),
                },
                data=data,
                idempotency_key=f"{instance}/send-summary/1",
                writes=self._take_writes(),  # written before the email goes
            ),
        )
        self._record(input, instance, "send-summary", "action", began, workflow.now(), "done")

        # check-size, then won
        now = workflow.now()
        if quote["amount"] >= 50000:
            raise ApplicationError("the bench only drives quotes under 50,000")
        self._record(input, instance, "check-size", "decision", now, now, "otherwise")
        now = workflow.now()
        self._record(input, instance, "won", "end", now, now, "won")
        await ProcessContract.finish_instance.run(
            FinishInstanceInput(
                instance_id=instance,
                status="completed",
                result="won",
                data=data,
                ended_at=now,
                writes=self._take_writes(),
            ),
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ProcessResult(status="completed", result="won", data=data)

    def _take_writes(self) -> StepWrites:
        writes, self.writes = self.writes, StepWrites()
        return writes

    def _clock(
        self, instance: str, seq: int, kind: SlaEventKind, at: Any, due: Any, detail: str
    ) -> None:
        """Keep one event of the call step's SLA clock to write, as duly's interpreter does."""
        event = SlaEvent(
            clock=f"step:{CALL}", kind=kind, at=at, step=CALL, visit=1, due_at=due, detail=detail
        )
        self.writes.sla_events = RecordSlaEventsInput(
            instance_id=instance, first_seq=seq, events=[event]
        )

    def _record(
        self,
        input: HandInput,
        instance: str,
        step: str,
        kind: str,
        opened: Any,
        closed: Any,
        outcome: str,
        **task: Any,
    ) -> None:
        self.writes.steps.append(
            RecordStepInput(
                instance_id=instance,
                process=input.process,
                version=input.version,
                step=step,
                kind=kind,
                visit=1,
                assignee=task.get("assignee"),
                team=task.get("team"),
                opened_at=opened,
                due_at=task.get("due"),
                closed_at=closed,
                outcome=outcome,
                sla_met=task.get("met"),
                highest_rung=task.get("rungs"),
                business_seconds=business_time.elapsed(
                    input.calendar, opened, closed
                ).total_seconds(),
            ),
        )

    @workflow.update
    async def complete_task(self, input: CompleteTaskInput) -> CompleteTaskResult:
        self.completion = input
        return CompleteTaskResult(
            task_id=input.task_id, outcome=input.outcome, next_step=OUTCOMES[input.outcome]
        )

    @complete_task.validator
    def _check(self, input: CompleteTaskInput) -> None:
        if self.task_id is None or self.completion is not None or input.task_id != self.task_id:
            raise ValueError(f"task {input.task_id} is not open")
        if input.outcome not in OUTCOMES:
            raise ValueError(f"'{input.outcome}' is not an outcome of {CALL}")


def summary_body(quote: dict[str, Any], contact: dict[str, Any]) -> str:
    """definitions/templates/quote-summary.txt, written as Python."""
    valid = f"  Valid until:  {quote['valid_until']}\n" if quote.get("valid_until") else ""
    return (
        f"Hi {contact['name']},\n\n"
        f"Thank you for taking the time to talk with us about quote {quote['number']}.\n\n"
        "Here is a short summary:\n\n"
        f"  Quote:  {quote['number']}\n"
        f"  Total:  {quote['amount']} {quote.get('currency') or 'USD'}\n"
        f"{valid}\n"
        "If anything in the quote does not match what we discussed, just reply to this\n"
        "email and we will send a revised version the same day.\n\n"
        "When you are ready to go ahead, you can accept the quote from the link in the\n"
        "original email, or reply here and we will take care of the paperwork.\n\n"
        "Best regards,\nYour account team"
    )


# --- the worker subprocess (`--serve duly|hand`) ------------------------------------------------


async def serve(side: str) -> None:
    """Run a worker like `python worker.py`; `hand` swaps only the workflow class."""
    from duly.settings import get_settings
    from duly.temporal_client import connect, settle
    from duly.worker import (
        ACTIVITY_THREADS,
        build_worker,
        configure_logging,
        prepare_database,
        stop_on_signals,
    )

    settings = get_settings()
    configure_logging(settings)
    definitions = load_definitions(settings.definitions)
    client = await connect(settings.temporal_address, settings.temporal_namespace)
    prepare_database(settings, definitions).dispose()
    stop = asyncio.Event()
    stop_on_signals(stop)
    with ThreadPoolExecutor(
        max_workers=ACTIVITY_THREADS, thread_name_prefix="duly-activity"
    ) as executor:
        if side == "duly":
            worker = build_worker(client, settings, activity_executor=executor)
        else:
            # build duly's worker on a queue nobody uses, then the same worker for this workflow
            model = build_worker(
                client,
                settings,
                task_queue=f"{settings.task_queue}-unused",
                activity_executor=executor,
            )
            config = model.config()
            config["task_queue"] = settings.task_queue
            config["workflows"] = [HandWrittenQuoteFollowUp]
            worker = Worker(**config)
        async with worker:
            structlog.get_logger().info("worker running", side=side)
            await stop.wait()
    await settle()


# --- the driver -------------------------------------------------------------------------------


def quote_data(key: str) -> dict[str, Any]:
    return {
        "quote": {"id": key, "number": key, "amount": 12_000, "currency": "USD"},
        "contact": {"name": "Lee Park", "email": "lee@example.com"},
        "owner": "ana",
    }


@dataclass
class Driver:
    """Drives instances of one side to their end."""

    side: str
    client: Client
    definitions: Definitions
    task_queue: str
    watcher: h.TaskWatcher
    rejected: int = 0
    workflow_ids: list[str] = field(default_factory=list)

    async def one(self, key: str) -> None:
        data = quote_data(key)
        if self.side == "duly":
            instance = await duly_client.start_instance(
                self.client, self.definitions, PROCESS, data, task_queue=self.task_queue
            )
            workflow_id = workflow_of(instance, task=False)
        else:
            compiled = self.definitions.processes[PROCESS]
            carry = self.side == "hand+def"
            handle = await self.client.start_workflow(
                HAND_WORKFLOW,
                HandInput(
                    business_key=key,
                    data=data,
                    calendar=compiled.calendar,
                    process=compiled.name,
                    version=compiled.version,
                    hash=compiled.hash,
                    definition_json=compiled.model_dump_json(by_alias=True) if carry else "",
                    source=compiled.source if carry else "",
                ),
                id=f"hand-quote/{key}",
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )
            workflow_id = handle.id
            instance = instance_id(handle.id, handle.first_execution_run_id or "")
        task_id = f"{instance}/{CALL}/1"
        await self.watcher.opened(task_id, INSTANCE_TIMEOUT)
        await self.complete(workflow_id, task_id)
        handle = self.client.get_workflow_handle(workflow_id, result_type=ProcessResult)
        result = await asyncio.wait_for(handle.result(), INSTANCE_TIMEOUT)
        if result.result != "won":
            raise RuntimeError(f"{workflow_id} ended {result.result}, expected won")
        self.workflow_ids.append(workflow_id)

    async def complete(self, workflow_id: str, task_id: str) -> None:
        """Complete the task; retry while the workflow has not yet taken in its opening."""
        for attempt in range(200):
            try:
                if self.side == "duly":
                    await duly_client.complete_task(self.client, task_id, "reached", by="ana")
                else:
                    await self.client.get_workflow_handle(workflow_id).execute_update(
                        "complete_task",
                        CompleteTaskInput(task_id=task_id, outcome="reached", by="ana"),
                        result_type=CompleteTaskResult,
                    )
                return
            except (duly_client.TaskRejected, WorkflowUpdateFailedError) as exc:
                reason = exc.reason if isinstance(exc, duly_client.TaskRejected) else exc.cause
                if "not open" not in str(reason):
                    raise
                self.rejected += 1
                await asyncio.sleep(min(0.05 * (attempt + 1), 0.5))
        raise RuntimeError(f"task {task_id} never became completable")


@dataclass
class Run:
    side: str
    instances: int
    seconds: float
    worker_cpu: float
    server_cpu: float
    driver_cpu: float
    rejected: int
    emails: int
    profile: dict[str, Any]
    history: WorkflowHistory | None = None

    @property
    def rate(self) -> float:
        return self.instances / self.seconds


def history_profile(history: WorkflowHistory) -> dict[str, Any]:
    """Events, workflow tasks, timers, activities and bytes of one instance's history."""
    events = history.events
    kinds = [e.event_type for e in events]
    started = events[0].workflow_execution_started_event_attributes
    return {
        "events": len(events),
        "workflow_tasks": kinds.count(EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED),
        "timers": kinds.count(EventType.EVENT_TYPE_TIMER_STARTED),
        "activities": [
            e.activity_task_scheduled_event_attributes.activity_type.name
            for e in events
            if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        ],
        "bytes": sum(e.ByteSize() for e in events),
        "input_bytes": started.input.ByteSize(),
    }


async def measure(
    side: str,
    label: str,
    *,
    client: Client,
    code: Path,
    definitions_dir: Path,
    address: str,
    server_pid: int,
    definitions: Definitions,
    sink: h.SmtpSink,
    folder: Path,
    instances: int,
    concurrency: int,
) -> Run:
    """One side: a fresh store and worker, a warm-up, then `instances` timed instances."""
    database = folder / f"{label}.db"
    task_queue = f"bench-{label}"
    env = h.worker_env(
        code=code,
        address=address,
        task_queue=task_queue,
        database=database,
        definitions=definitions_dir,
        smtp_port=sink.port,
    )
    worker = h.Subprocess(
        h.python(str(Path(__file__).resolve()), "--serve", "duly" if side == "duly" else "hand"),
        env=env,
        log=folder / f"{label}.worker.log",
    )
    watcher = h.TaskWatcher(database)
    watching = asyncio.create_task(watcher.run())
    try:
        await worker.start()
        await worker.wait_for_line("worker running")
        driver = Driver(side, client, definitions, task_queue, watcher)
        await h.bounded(
            concurrency, [partial(driver.one, f"{label}-w{i:03d}") for i in range(WARMUP)]
        )
        emails, rejected = sink.received, driver.rejected
        cpu = (h.cpu_seconds(worker.pid), h.cpu_seconds(server_pid), time.process_time())
        began = time.perf_counter()
        await h.bounded(
            concurrency, [partial(driver.one, f"{label}-{i:05d}") for i in range(instances)]
        )
        seconds = time.perf_counter() - began
        used = (h.cpu_seconds(worker.pid), h.cpu_seconds(server_pid), time.process_time())
        history = await client.get_workflow_handle(driver.workflow_ids[-1]).fetch_history()
        return Run(
            side=side,
            instances=instances,
            seconds=seconds,
            worker_cpu=used[0] - cpu[0],
            server_cpu=used[1] - cpu[1],
            driver_cpu=used[2] - cpu[2],
            rejected=driver.rejected - rejected,
            emails=sink.received - emails,
            profile=history_profile(history),
            history=history,
        )
    finally:
        watcher.stop()
        await watching
        await worker.stop()


def worker_runner(client: Client) -> WorkflowRunner:
    """The workflow runner (sandbox) `duly.worker.build_worker` gives its worker."""
    from duly.settings import Settings
    from duly.worker import ACTIVITY_THREADS, build_worker

    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        model = build_worker(
            client, Settings(), task_queue="bench-unused", activity_executor=executor
        )
        return model.config()["workflow_runner"]


@contextlib.contextmanager
def templates_cached() -> Iterator[None]:
    """Patch in, for this process only, what the profile suggests for duly.language.expressions:
    keep each compiled Jinja template and expression by its text instead of compiling it again
    on every render (`Environment.from_string` and `compile_expression` do not cache)."""
    from duly.language import expressions

    env: Any = expressions._env
    plain = env.from_string, env.compile_expression
    env.from_string = functools.lru_cache(maxsize=4096)(env.from_string)
    env.compile_expression = functools.lru_cache(maxsize=4096)(env.compile_expression)
    try:
        yield
    finally:
        env.from_string, env.compile_expression = plain


async def replay_cost(
    histories: dict[str, WorkflowHistory],
    replays: int,
    runner: WorkflowRunner,
    *,
    profile_side: str | None = None,
) -> dict[str, float]:
    """CPU ms the workflow code takes per instance, from replaying one history many times.

    A replay runs every activation of the instance in a fresh sandbox, with no server: what the
    worker spends on the workflow itself (sandbox, module import, payload decoding, the
    interpreter), without the activities. With `profile_side`, print a cProfile of its replays.
    """
    import cProfile
    import pstats
    import threading

    profiler = cProfile.Profile()
    profiling = threading.Event()

    def start_profiling() -> None:
        if profiling.is_set():
            profiler.enable()

    cost: dict[str, float] = {}
    runs = [(side, history, False) for side, history in histories.items()]
    if "duly" in histories:
        runs.append((CACHED, histories["duly"], True))
    for side, history, cached in runs:
        profiling.clear()
        if side == profile_side:
            profiling.set()
        # one thread, profiled from its start: the replays' activations all run there
        with ThreadPoolExecutor(max_workers=1, initializer=start_profiling) as executor:
            replayer = Replayer(
                workflows=[ProcessWorkflow, HandWrittenQuoteFollowUp],
                workflow_task_executor=executor,
                workflow_runner=runner,
                data_converter=pydantic_data_converter,
            )
            with templates_cached() if cached else contextlib.nullcontext():
                await replayer.replay_workflows(repeat(history, 5))  # warm up
                began = time.process_time()
                results = await replayer.replay_workflows(repeat(history, replays))
                cost[side] = (time.process_time() - began) * 1000 / replays
            if side == profile_side:
                executor.submit(profiler.disable).result()
        assert not results.replay_failures
    if profile_side is not None:
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(35)
        stats.sort_stats("tottime").print_stats(20)
    return cost


async def repeat(history: WorkflowHistory, times: int) -> AsyncIterator[WorkflowHistory]:
    for _ in range(times):
        yield history


def report(runs: list[Run], args: argparse.Namespace, replay: dict[str, float]) -> None:
    sides = list(dict.fromkeys(run.side for run in runs))
    of = {side: [r for r in runs if r.side == side] for side in sides}
    rate = {s: sum(r.instances for r in of[s]) / sum(r.seconds for r in of[s]) for s in sides}
    median = {s: statistics.median(r.rate for r in of[s]) for s in sides}
    cpu = {  # worker + dev server CPU per instance, all rounds
        s: sum(r.worker_cpu + r.server_cpu for r in of[s]) * 1000 / sum(r.instances for r in of[s])
        for s in sides
    }
    print(
        f"instances: {args.instances} per side per round, {args.concurrency} in flight, "
        f"{args.rounds} round(s), after {WARMUP} warm-up instances per run"
    )
    print(
        f"{'run':<28}{'inst/s':>8}{'seconds':>9}{'worker':>10}{'server':>10}"
        f"{'driver':>10}{'retries':>9}{'emails':>8}"
    )
    print(f"{'':<45}{'CPU ms per instance':^30}")
    for run in runs:
        per = 1000 / run.instances
        print(
            f"{SIDES[run.side]:<28}{run.rate:8.1f}{run.seconds:9.1f}{run.worker_cpu * per:10.1f}"
            f"{run.server_cpu * per:10.1f}{run.driver_cpu * per:10.1f}{run.rejected:9d}"
            f"{run.emails:8d}"
        )
    print()
    print(f"{'one instance':<33}" + "".join(f"{SIDES[s]:>28}" for s in sides))
    last = {side: of[side][-1] for side in sides}
    for name, label in [
        ("events", "history events"),
        ("workflow_tasks", "workflow tasks"),
        ("timers", "timers started"),
        ("bytes", "history bytes"),
        ("input_bytes", "workflow input bytes"),
    ]:
        print(f"  {label:<31}" + "".join(f"{last[s].profile[name]:>28}" for s in sides))
    print(f"  {'worker+server CPU ms':<31}" + "".join(f"{cpu[s]:>28.1f}" for s in sides))
    if replay:
        print(
            f"  {'workflow code CPU ms (replay)':<31}"
            + "".join(f"{replay.get(s, math.nan):>28.1f}" for s in sides)
        )
        if CACHED in replay:
            print(
                f"  {'  with templates cached':<31}{'':>28}{replay[CACHED]:>28.1f}"
                "   (patched in for this replay only)"
            )
    sequences = {side: last[side].profile["activities"] for side in sides}
    print(f"  activities ({len(sequences['duly'])}): {', '.join(sequences['duly'])}")
    same = all(seq == sequences["duly"] for seq in sequences.values())
    print(f"  same activity sequence on every side: {'yes' if same else 'NO'}")
    if not same:
        for side, seq in sequences.items():
            print(f"    {SIDES[side]}: {', '.join(seq)}")
    print()
    for side in sides:
        print(
            f"{SIDES[side]:<28}{rate[side]:6.1f} instances/s over all rounds "
            f"(median of runs {median[side]:.1f})"
        )
    ratio = rate["duly"] / rate["hand"]
    of_medians = median["duly"] / median["hand"]
    print(
        f"ratio duly/hand-written: {ratio:.2f} over all rounds, {of_medians:.2f} of medians, "
        f"{cpu['hand'] / cpu['duly']:.2f} by CPU per instance"
    )
    if "hand+def" in rate:
        print(
            f"hand-written + definition / hand-written: {rate['hand+def'] / rate['hand']:.2f} "
            f"(by CPU per instance {cpu['hand'] / cpu['hand+def']:.2f})"
        )
    verdict = "met" if ratio >= TARGET_RATIO else "MISSED"
    print(f"target duly/hand-written >= {TARGET_RATIO}: {verdict}")


async def bench(args: argparse.Namespace) -> None:
    # duly.client logs every start and completion: keep the driver quiet (and cheap) on both sides
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    definitions = load_definitions(h.ROOT / "definitions")
    order = ["hand", "duly"] + (["hand+def"] if args.profile else [])
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="duly-bench-") as tmp, h.SmtpSink() as sink:
        async with h.HttpSink() as webhooks:
            folder = Path(tmp)
            code = h.snapshot_code(folder)
            definitions_dir = h.copy_definitions(folder, webhooks=webhooks.port)
            async with h.dev_server(folder) as (server, client):
                assert server.process is not None
                runner = worker_runner(client) if args.profile else None
                for round_ in range(args.rounds):
                    for side in order if round_ % 2 == 0 else order[::-1]:
                        label = f"{side.replace('+', '-')}-{round_}"
                        run = await measure(
                            side,
                            label,
                            client=client,
                            code=code,
                            definitions_dir=definitions_dir,
                            address=server.address,
                            server_pid=server.process.pid,
                            definitions=definitions,
                            sink=sink,
                            folder=folder,
                            instances=args.instances,
                            concurrency=args.concurrency,
                        )
                        print(f"  {SIDES[side]}: {run.rate:.1f} instances/s", file=sys.stderr)
                        runs.append(run)
    replay: dict[str, float] = {}
    if runner is not None:
        histories = {run.side: run.history for run in runs if run.history is not None}
        replay = await replay_cost(
            histories,
            args.replays,
            runner,
            profile_side="duly" if args.cprofile else None,
        )
    report(runs, args, replay)
    if args.json:
        print(json.dumps([{**run.__dict__, "history": None} for run in runs], default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run the hand-written workflow carrying the definition",
    )
    parser.add_argument(
        "--replays",
        type=int,
        default=200,
        help="with --profile: replays of one history per side, timed",
    )
    parser.add_argument(
        "--cprofile", action="store_true", help="with --profile: print a cProfile of duly's replays"
    )
    parser.add_argument("--json", action="store_true", help="also print the runs as JSON")
    parser.add_argument("--serve", choices=["duly", "hand"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(serve(args.serve))
    else:
        h.run(bench(args))


if __name__ == "__main__":
    main()
