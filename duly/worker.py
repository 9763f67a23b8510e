"""Start duly's Temporal worker.

The worker runs `ProcessWorkflow`, `MonitorWorkflow` and every activity on the task queue
`DULY_TASK_QUEUE`. The activities are synchronous (blocking database work), so they run on a
thread pool, one session per call. Beside it run the notification deliverer and the periodic
monitors' scheduler (`duly.monitors.scheduler`), which starts a `MonitorWorkflow` per slot.

The root `worker.py` runs it (`python worker.py`, or `duly worker`) against a running Temporal;
`duly up` runs the same worker beside an embedded Temporal dev server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.worker import Interceptor, Worker, WorkflowRunner

from activities.actions import ActionHandler
from activities.monitors import MonitorActivities
from activities.process import ProcessActivities
from activities.summary import SummaryActivities
from duly import published
from duly.language.errors import DefinitionError
from duly.language.loader import Definitions, load_definitions
from duly.local_activities import LocalActivities
from duly.logs import ActivityLogContext
from duly.logs import configure as configure_logs
from duly.metrics import serving as serving_metrics
from duly.notify import delivering
from duly.settings import Settings, get_settings
from duly.store import crud
from duly.store.db import SessionFactory, make_engine, migrate, session_factory, write_session
from duly.temporal_client import TemporalSettingsError, TemporalUnavailable, connect, settle
from workflows.contracts import CONTRACTS, implementations
from workflows.monitor import MonitorWorkflow
from workflows.process import ProcessWorkflow
from workflows.sandbox import build_id, workflow_runner
from workflows.summary import WeeklySummaryWorkflow

log = structlog.get_logger(__name__)

ACTIVITY_THREADS = 20
# Workflow tasks this worker holds at once. A task's time starts when the worker takes it
# (`workflow.now()`), and an SLA timer is set for `due - now` when the task completes; every task
# held but waiting for the one Python thread that runs workflow code makes the timers it sets
# late by that wait (`bench/breach_latency.py` splits it out). The SDK's default is 100; a few
# keep the pipeline full without a queue inside the worker.
WORKFLOW_TASK_SLOTS = 8
# How long a workflow task waits for this worker on its own (sticky) queue before the server
# moves it to the shared queue, where it is replayed from its whole history. The SDK's 10 s is
# shorter than a Monday-morning storm takes to drain, and each task moved then costs a replay:
# the storm spirals. This worker is its sticky queue's only poller; when it is gone, new tasks
# go to the shared queue anyway (the server sees no poller), so only the tasks already queued
# for it wait this long.
STICKY_TASK_WAIT = timedelta(seconds=60)
# Let in-flight activities (short database writes) finish before the worker stops
GRACEFUL_SHUTDOWN = timedelta(seconds=10)


def build_worker(
    client: Client,
    settings: Settings,
    *,
    task_queue: str | None = None,
    activity_executor: Executor | None = None,
    local_activities: LocalActivities | None = None,
    runner: WorkflowRunner | None = None,
    workflow_task_executor: ThreadPoolExecutor | None = None,
    handlers: Mapping[str, ActionHandler] | None = None,
) -> Worker:
    """A worker for `ProcessWorkflow`, `MonitorWorkflow`, `WeeklySummaryWorkflow`, every activity.

    Args:
        client: A connected Temporal client (with the pydantic data converter).
        settings: duly's settings: the database URL and the default task queue.
        task_queue: The task queue to poll; defaults to `settings.task_queue`.
        activity_executor: Runs the synchronous activities; defaults to a new thread pool of
            `ACTIVITY_THREADS` threads. The caller owns (and shuts down) one it passes in.
        local_activities: Runs every activity inside its workflow task, and counts them
            (`duly.local_activities`): for the time-skipping test server only.
        runner: Runs the workflow code; defaults to duly's sandbox (`workflows.sandbox`).
        workflow_task_executor: Runs the workflow activations; defaults to the SDK's thread
            pool. The caller owns one it passes in.
        handlers: The actions steps may `do`; `activities.actions.ACTION_HANDLERS` if None.

    Returns:
        The worker, not yet running: `await worker.run()` or `async with worker:`.
    """
    sessions = session_factory(make_engine(settings.database_url))
    interceptors: list[Interceptor] = [ActivityLogContext()]  # activity logs name their instance
    if local_activities is not None:
        interceptors.append(local_activities)
    return Worker(
        client,
        task_queue=task_queue or settings.task_queue,
        workflows=[ProcessWorkflow, MonitorWorkflow, WeeklySummaryWorkflow],
        workflow_runner=runner or workflow_runner(client.data_converter),
        activities=activities(sessions, settings, handlers),
        activity_executor=activity_executor or ThreadPoolExecutor(max_workers=ACTIVITY_THREADS),
        max_concurrent_activities=ACTIVITY_THREADS,
        workflow_task_executor=workflow_task_executor,
        max_concurrent_workflow_tasks=WORKFLOW_TASK_SLOTS,
        # each cached instance costs about 170 kB (its sandbox and state; the interpreter and
        # its definition are shared): see bench/worker_memory.py and docs/capacity.md
        max_cached_workflows=settings.cached_instances,
        sticky_queue_schedule_to_start_timeout=STICKY_TASK_WAIT,
        graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        interceptors=interceptors,
        build_id=build_id(),
    )


def activities(
    sessions: SessionFactory,
    settings: Settings,
    handlers: Mapping[str, ActionHandler] | None = None,
) -> list[Callable[..., Any]]:
    """Every workflow's activities, bound to the database and settings, for `Worker`.

    Derived from the workflows' contracts (`workflows.contracts`): each activity they name
    is implemented exactly once, with the types they name.

    Raises:
        ContractError: An activity is missing, implemented twice, or in no contract.
    """
    holders = (
        ProcessActivities(sessions, settings, handlers),
        MonitorActivities(sessions),
        SummaryActivities(sessions, settings),
    )
    return implementations(CONTRACTS, holders)


def prepare_database(
    settings: Settings, definitions: Definitions, *, root: str | Path | None = None
) -> Engine:
    """Migrate duly's database to the newest schema, publish the definitions, sync the org.

    The folder they were loaded from is published as a new revision of the published set
    when it differs from the current one (`duly.published.publish_if_same`): what starts is
    what is on disk, and a process changed without a new version refuses the start.

    Args:
        settings: duly's settings (the database URL).
        definitions: The loaded definitions, published and whose org is synced.
        root: The folder they were loaded from; defaults to `settings.definitions`.

    Returns:
        The database engine.

    Raises:
        crud.VersionConflicts: A process changed without a new `version:`; nothing is written.
    """
    engine = make_engine(settings.database_url)
    migrate(engine)  # a database from an older duly is upgraded; several workers may race here
    with write_session(session_factory(engine)) as session:
        crud.publish_definitions(session=session, processes=definitions.processes.values())
        published.publish_if_same(session, root or settings.definitions, definitions)
        crud.sync_org(session=session, org=definitions.org)
    log.info("org synced", users=len(definitions.org.users), teams=len(definitions.org.teams))
    return engine


def stop_on_signals(stop: asyncio.Event) -> Callable[[], None]:
    """Set `stop` on SIGINT or SIGTERM; returns a function that restores the default handlers."""
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)

    def restore() -> None:
        for sig in signals:
            loop.remove_signal_handler(sig)

    return restore


async def run_worker(
    client: Client,
    settings: Settings,
    stop: asyncio.Event,
    *,
    task_queue: str | None = None,
    definitions: Definitions | None = None,
) -> None:
    """Run a worker until `stop` is set (or the worker fails), then shut it down cleanly.

    The activity thread pool lives as long as the worker: in-flight activities get
    `GRACEFUL_SHUTDOWN` to finish, and the pool is shut down after the worker. Beside the
    worker runs the notification deliverer (`duly.notify.delivering`), which sends what the
    activities queued; it stops after the worker. Given `definitions`, the periodic monitors'
    scheduler runs too, from after the worker starts until before it stops.

    Args:
        client: A connected Temporal client.
        settings: duly's settings.
        stop: Set it to stop the worker.
        task_queue: The task queue to poll; defaults to `settings.task_queue`.
        definitions: The definitions whose monitors to schedule; None runs no scheduler.

    Raises:
        Exception: Whatever made the worker fail, other than being asked to stop.
    """
    # The notification deliverer runs as long as the worker, and stops after it
    async with delivering(settings), serving_metrics(settings):
        with ThreadPoolExecutor(
            max_workers=ACTIVITY_THREADS, thread_name_prefix="duly-activity"
        ) as executor:
            worker = build_worker(
                client, settings, task_queue=task_queue, activity_executor=executor
            )
            running = asyncio.create_task(worker.run(), name="duly-worker")
            stopping = asyncio.create_task(stop.wait(), name="duly-worker-stop")
            log.info("worker running", task_queue=task_queue or settings.task_queue)
            async with _monitors(client, settings, definitions, task_queue):
                await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not running.done():
                await worker.shutdown()
            stopping.cancel()
            await running  # re-raises a worker failure
            log.info("worker stopped")


@contextlib.asynccontextmanager
async def _monitors(
    client: Client, settings: Settings, definitions: Definitions | None, task_queue: str | None
) -> AsyncIterator[None]:
    """The periodic monitors' scheduler, running while inside; nothing without definitions."""
    if definitions is None:
        yield
        return
    from duly.monitors.following import follow as follow_published
    from duly.monitors.scheduler import Periodic, cron_trigger, scheduling
    from duly.summary_schedule import SCHEDULE_CRON, SCHEDULE_JOB, ScheduledStart

    engine = make_engine(settings.database_url)
    queue = task_queue or settings.task_queue
    # Each manager's weekly summary, Mondays at 08:00 UTC (duly/summary_schedule.py); registered
    # before the scheduler starts, which drops stored jobs nobody registered
    start = ScheduledStart(queue)
    summary = Periodic(
        SCHEDULE_JOB, cron_trigger(SCHEDULE_CRON), start, misfire_grace=start.misfire_grace
    )
    live = published.PublishedDefinitions(session_factory(engine), definitions)
    try:
        async with scheduling(
            client, engine, live.current(), task_queue=queue, periodic=[summary]
        ) as scheduler:
            # an admin's `duly publish` reaches the monitors without a restart
            following = asyncio.create_task(follow_published(scheduler, live, task_queue=queue))
            try:
                yield
            finally:
                following.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await following
    finally:
        engine.dispose()


async def main(
    address: str | None = None,
    definitions_dir: str | Path | None = None,
    settings: Settings | None = None,
) -> None:
    """Connect to Temporal, sync the org into the database and run the worker until a signal.

    Args:
        address: `host:port` of Temporal; defaults to `settings.temporal_address`.
        definitions_dir: The definitions folder; defaults to `settings.definitions`.
        settings: duly's settings; defaults to the environment's.
    """
    settings = settings or get_settings()
    definitions = load_definitions(definitions_dir or settings.definitions)
    client = await connect(address, settings=settings, metrics=settings.metrics_port is not None)
    prepare_database(settings, definitions, root=definitions_dir or settings.definitions).dispose()
    stop = asyncio.Event()
    restore = stop_on_signals(stop)
    try:
        await run_worker(client, settings, stop, definitions=definitions)
    finally:
        restore()
        await settle()


def configure_logging(settings: Settings, *, level: int = logging.INFO) -> None:
    """Log with structlog to stderr: readable text, or JSON lines when `DULY_LOG_FORMAT=json`.

    Args:
        settings: duly's settings (`log_format`).
        level: The lowest level logged (a `logging` level).
    """
    configure_logs(settings, level=level)


def run() -> None:
    """Run the worker from the environment's settings until a signal; exit with a clear error."""
    configure_logging(get_settings())
    try:
        asyncio.run(main())
    except DefinitionError as exc:
        sys.exit(exc.report())
    except (TemporalUnavailable, TemporalSettingsError, crud.VersionConflicts) as exc:
        sys.exit(str(exc))
