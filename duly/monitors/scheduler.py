"""APScheduler inside the worker: periodic jobs that only start Temporal workflows.

Jobs live in duly's database (APScheduler's SQLAlchemy job store, table `scheduled_jobs`), so
every worker sees the same schedule. A firing does one thing: it starts a workflow whose id
names the job and its time slot (`monitor/support-backlog/2026-11-30T09:15Z`), refusing a
duplicate id. Two workers that fire the same slot (APScheduler does not coordinate schedulers
sharing a store) therefore start it once; the second start is refused and logged. The checking
itself is the workflow's (workflows/monitor.py); no scheduling logic lives there (STYLE 15).

Slots are the same on every worker: an interval is counted from a fixed epoch (1970-01-01 UTC),
so `every: 15 minutes` fires at :00, :15, :30 and :45 whichever worker registered it last, and a
cron schedule is the same everywhere by nature. With `during:` a slot outside the calendar's
open hours is skipped, before anything starts.

Other periodic work registers on the same scheduler with `Scheduler.add_periodic`.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
)
from apscheduler.executors.base import BaseExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from duly.language import business_time
from duly.language.business_time import BusinessCalendar
from duly.language.loader import Definitions
from duly.language.model import MonitorSpec
from duly.monitors.messages import MONITOR_WORKFLOW, MonitorInput, Period

log = structlog.get_logger(__name__)

JOB_TABLE = "scheduled_jobs"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STORED_JOB = "duly.monitors.scheduler:stored_job"
EXECUTOR = "duly-slots"
DEFAULT_MISFIRE_GRACE = timedelta(minutes=5)
# A check that cannot finish within this (the database down for an hour) gives way to later slots
MONITOR_RUN_TIMEOUT = timedelta(hours=1)
STOP_TIMEOUT = 5.0  # seconds in-flight starts get to finish when the scheduler stops

StartWorkflow = Callable[[Client, datetime], Awaitable[object]]
"""Starts the workflow for one firing, given the client and the slot's scheduled time (UTC)."""


def stored_job() -> None:
    """What the job store records as each job's function; the scheduler's executor runs jobs.

    Raises:
        RuntimeError: Always: a job is fired by `Scheduler`, never called directly.
    """
    raise RuntimeError("duly's periodic jobs are run by duly.monitors.scheduler.Scheduler")


def slot_text(at: datetime) -> str:
    """A slot's time as in workflow ids: `2026-11-30T09:15Z` (seconds only when not zero)."""
    at = at.astimezone(UTC)
    return at.strftime("%Y-%m-%dT%H:%MZ" if at.second == 0 else "%Y-%m-%dT%H:%M:%SZ")


def slot_workflow_id(prefix: str, at: datetime) -> str:
    """The workflow id of a slot: `<prefix>/<slot>`, e.g. `monitor/support-backlog/...`."""
    return f"{prefix}/{slot_text(at)}"


def interval_trigger(every: timedelta) -> IntervalTrigger:
    """Every `every`, counted from a fixed epoch: the same slots on every worker."""
    return IntervalTrigger(seconds=int(every.total_seconds()), start_date=EPOCH, timezone=UTC)


def cron_trigger(expression: str, timezone: str = "UTC") -> CronTrigger:
    """A five-field cron expression, read in `timezone`.

    Raises:
        ValueError: The expression is not valid cron.
    """
    return CronTrigger.from_crontab(expression, timezone=timezone)


async def start_once(
    client: Client,
    workflow: str,
    arg: Any,
    *,
    id: str,
    task_queue: str,
    run_timeout: timedelta | None = None,
) -> bool:
    """Start a workflow unless one with this id ran or runs; True if this call started it.

    The id is never reused (`REJECT_DUPLICATE`, and `FAIL` while one runs), so starts of one
    slot from several workers make one run.
    """
    try:
        await client.start_workflow(
            workflow,
            arg,
            id=id,
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            run_timeout=run_timeout,
        )
    except WorkflowAlreadyStartedError:
        log.info("slot_already_started", workflow_id=id)
        return False
    log.info("slot_started", workflow_id=id)
    return True


@dataclass(frozen=True)
class Periodic:
    """A periodic job: when it fires and what it starts.

    Attributes:
        job_id: The job's id in the store (a monitor's name, say); registering it again
            replaces it.
        trigger: When it fires (`interval_trigger`, `cron_trigger`, or any APScheduler trigger).
        start: Starts the slot's workflow; should use `start_once` with `slot_workflow_id`.
        during: Fire only while this calendar is open; slots outside open hours are skipped.
        misfire_grace: A firing later than this (the worker was busy) is skipped.
    """

    job_id: str
    trigger: BaseTrigger
    start: StartWorkflow
    during: BusinessCalendar | None = None
    misfire_grace: timedelta = DEFAULT_MISFIRE_GRACE


class Scheduler:
    """APScheduler with its job store in duly's database, firing slots as Temporal workflows.

    Register jobs (`add_periodic`, `add_monitors`), then `start()` inside the running event
    loop; `stop()` when done. Jobs found in the store that this scheduler does not register
    (a monitor deleted from definitions/) are removed at start.

    Args:
        client: The Temporal client firings start workflows with.
        engine: duly's database; the job store's table is created there if missing.
    """

    def __init__(self, client: Client, engine: Engine) -> None:
        self.client = client
        self.engine = engine
        self.jobs: dict[str, Periodic] = {}
        self.monitors: set[str] = set()  # the jobs `add_monitors` registered
        self._executor = _SlotExecutor(self.fire)
        self._scheduler: AsyncIOScheduler | None = None

    def add_periodic(
        self,
        job_id: str,
        trigger: BaseTrigger,
        start: StartWorkflow,
        *,
        during: BusinessCalendar | None = None,
        misfire_grace: timedelta = DEFAULT_MISFIRE_GRACE,
    ) -> None:
        """Register a periodic job (before or after `start`); the same id replaces it.

        Args:
            job_id: The job's id in the store, unique across all of duly's periodic jobs.
            trigger: When it fires.
            start: Called with the client and the slot's time at each firing; it should start
                one workflow whose id names the slot (`start_once`, `slot_workflow_id`).
            during: Fire only while this calendar is open.
            misfire_grace: A firing later than this is skipped.
        """
        periodic = Periodic(job_id, trigger, start, during, misfire_grace)
        self.jobs[job_id] = periodic
        if self._scheduler is not None:
            self._store(periodic)

    def add_monitors(self, definitions: Definitions, *, task_queue: str) -> None:
        """Register every monitor in `definitions`, as a job named after the monitor.

        Args:
            definitions: The loaded definitions (monitors, and the processes and calendars
                they name).
            task_queue: The task queue the monitor workflows run on.
        """
        self.monitors |= set(definitions.monitors)
        for spec in definitions.monitors.values():
            during = definitions.calendars[spec.schedule.during] if spec.schedule.during else None
            self.add_periodic(
                spec.monitor,
                monitor_trigger(spec, during),
                _MonitorStart(monitor_input(spec, definitions), task_queue),
                during=during,
                misfire_grace=_grace(spec),
            )

    def sync_monitors(self, definitions: Definitions, *, task_queue: str) -> None:
        """Make the monitor jobs those of `definitions` (a new published set), while running.

        A monitor no longer defined stops firing; a new or changed one is (re)registered; other
        periodic jobs are left alone.
        """
        for gone in sorted(self.monitors - set(definitions.monitors)):
            self.jobs.pop(gone, None)
            self.monitors.discard(gone)
            if self._scheduler is not None:
                with contextlib.suppress(JobLookupError):
                    self._scheduler.remove_job(gone)
            log.info("periodic_job_removed", job=gone)
        self.add_monitors(definitions, task_queue=task_queue)

    async def start(self) -> None:
        """Start firing: store every registered job, drop stored jobs nobody registered."""
        scheduler = AsyncIOScheduler(
            jobstores={"default": SQLAlchemyJobStore(engine=self.engine, tablename=JOB_TABLE)},
            executors={EXECUTOR: self._executor},
            job_defaults={"coalesce": True, "max_instances": 1},
            timezone=UTC,
        )
        scheduler.start()
        self._scheduler = scheduler
        for job in scheduler.get_jobs():
            if job.id not in self.jobs:
                log.info("periodic_job_removed", job=job.id)
                with contextlib.suppress(JobLookupError):  # another worker removed it first
                    scheduler.remove_job(job.id)
        for periodic in self.jobs.values():
            self._store(periodic)
        log.info("scheduler_started", jobs=sorted(self.jobs))

    def _store(self, periodic: Periodic) -> None:
        assert self._scheduler is not None
        self._scheduler.add_job(
            STORED_JOB,
            periodic.trigger,
            id=periodic.job_id,
            name=periodic.job_id,
            executor=EXECUTOR,
            replace_existing=True,
            misfire_grace_time=max(1, int(periodic.misfire_grace.total_seconds())),
        )

    def next_fire_time(self, job_id: str) -> datetime | None:
        """When the job fires next, as stored; None when it is not scheduled."""
        job: Job | None = self._scheduler.get_job(job_id) if self._scheduler else None
        return job.next_run_time if job is not None else None

    async def fire(self, job_id: str, at: datetime) -> bool:
        """Fire one slot of a job: start its workflow unless the calendar is closed at `at`.

        Returns:
            True when this call started the slot's workflow; False when it was skipped
            (closed, or a job this scheduler does not know) or already started.
        """
        periodic = self.jobs.get(job_id)
        if periodic is None:
            log.warning("periodic_job_unknown_here", job=job_id)
            return False
        if periodic.during is not None and not business_time.is_open(periodic.during, at):
            log.info("slot_skipped_closed", job=job_id, slot=slot_text(at))
            return False
        started = await periodic.start(self.client, at)
        return started is not False

    async def stop(self) -> None:
        """Stop firing; starts in flight get a few seconds to finish."""
        if self._scheduler is None:
            return
        self._scheduler.shutdown(wait=False)
        self._scheduler = None
        await self._executor.drain(STOP_TIMEOUT)
        log.info("scheduler_stopped")


@contextlib.asynccontextmanager
async def scheduling(
    client: Client,
    engine: Engine,
    definitions: Definitions,
    *,
    task_queue: str,
    periodic: Sequence[Periodic] = (),
) -> AsyncIterator[Scheduler]:
    """A started scheduler with every monitor of `definitions` registered, stopped on exit.

    Args:
        client: The Temporal client firings start workflows with.
        engine: duly's database, where the jobs are kept.
        definitions: The definitions whose monitors are scheduled.
        task_queue: The task queue the monitor workflows run on.
        periodic: Other periodic jobs, registered before the scheduler starts (so a start
            never drops them from the store as unknown, even for a moment).
    """
    scheduler = Scheduler(client, engine)
    scheduler.add_monitors(definitions, task_queue=task_queue)
    for job in periodic:
        scheduler.add_periodic(
            job.job_id, job.trigger, job.start, during=job.during, misfire_grace=job.misfire_grace
        )
    await scheduler.start()
    try:
        yield scheduler
    finally:
        await scheduler.stop()


# --- monitors ----------------------------------------------------------------------------------


def monitor_trigger(spec: MonitorSpec, during: BusinessCalendar | None = None) -> BaseTrigger:
    """When a monitor fires: its interval from the epoch, or its cron expression.

    A cron expression is read in the `during:` calendar's time zone when there is one
    (`0 9 * * mon-fri` is nine o'clock at the desk), else in UTC.
    """
    if spec.schedule.every is not None:
        return interval_trigger(timedelta(seconds=spec.schedule.every.seconds))
    assert spec.schedule.cron is not None  # the model requires one of the two
    return cron_trigger(spec.schedule.cron, during.timezone if during else "UTC")


def monitor_input(spec: MonitorSpec, definitions: Definitions) -> MonitorInput:
    """The monitor's workflow input, less the slot: who `manager` is, the period, the zone."""
    process = definitions.processes.get(spec.filter.process or "")
    period: Period = "week"
    if process is not None and process.spec.goal is not None:
        period = process.spec.goal.period
    timezone = "UTC"
    if spec.schedule.during:
        timezone = definitions.calendars[spec.schedule.during].timezone
    elif process is not None:
        timezone = process.calendar.timezone
    return MonitorInput(
        monitor=spec,
        slot="",
        manager_team=spec.filter.team or (process.spec.team if process else None),
        period=period,
        timezone=timezone,
    )


def monitor_workflow_id(monitor: str, at: datetime) -> str:
    """`monitor/<monitor>/<slot>`: one check per monitor and slot."""
    return slot_workflow_id(f"monitor/{monitor}", at)


@dataclass(frozen=True)
class _MonitorStart:
    template: MonitorInput
    task_queue: str

    async def __call__(self, client: Client, at: datetime) -> bool:
        name = self.template.monitor.monitor
        return await start_once(
            client,
            MONITOR_WORKFLOW,
            self.template.model_copy(update={"slot": slot_text(at)}),
            id=monitor_workflow_id(name, at),
            task_queue=self.task_queue,
            run_timeout=MONITOR_RUN_TIMEOUT,
        )


def _grace(spec: MonitorSpec) -> timedelta:
    """A late firing still counts within a few minutes, never as late as the next slot."""
    if spec.schedule.every is None:
        return DEFAULT_MISFIRE_GRACE
    return min(DEFAULT_MISFIRE_GRACE, timedelta(seconds=spec.schedule.every.seconds))


class _SlotExecutor(BaseExecutor):  # type: ignore[misc]
    """Runs a due job by firing its slot (the job id and scheduled time) on the event loop.

    APScheduler's own executors call the stored function without the scheduled time; the slot
    needs it, and the function that starts the workflow lives on the `Scheduler`.
    """

    def __init__(self, fire: Callable[[str, datetime], Awaitable[bool]]) -> None:
        super().__init__()
        self._fire = fire
        self._pending: set[asyncio.Task[list[JobExecutionEvent]]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, scheduler: Any, alias: str) -> None:
        super().start(scheduler, alias)
        self._loop = scheduler._eventloop

    def shutdown(self, wait: bool = True) -> None:
        """Nothing to do here: `drain` awaits the firings in flight."""

    async def drain(self, timeout: float) -> None:
        pending = set(self._pending)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()

    def _do_submit_job(self, job: Job, run_times: list[datetime]) -> None:
        assert self._loop is not None
        task = self._loop.create_task(self._run(job, run_times))
        self._pending.add(task)

        def done(finished: asyncio.Task[list[JobExecutionEvent]]) -> None:
            self._pending.discard(finished)
            if finished.cancelled():
                return
            self._run_job_success(job.id, finished.result())

        task.add_done_callback(done)

    async def _run(self, job: Job, run_times: list[datetime]) -> list[JobExecutionEvent]:
        events = []
        store = job._jobstore_alias
        for run_time in run_times:
            late = datetime.now(UTC) - run_time
            if job.misfire_grace_time is not None and late.total_seconds() > job.misfire_grace_time:
                log.warning("slot_missed", job=job.id, slot=slot_text(run_time), late=str(late))
                events.append(JobExecutionEvent(EVENT_JOB_MISSED, job.id, store, run_time))
                continue
            try:
                await self._fire(job.id, run_time)
            except Exception as exc:
                # Temporal unreachable, say: this slot is lost, the next one tries again
                log.error("slot_not_started", job=job.id, slot=slot_text(run_time), error=str(exc))
                events.append(
                    JobExecutionEvent(
                        EVENT_JOB_ERROR,
                        job.id,
                        store,
                        run_time,
                        exception=exc,
                        traceback="".join(traceback.format_tb(exc.__traceback__)),
                    )
                )
            else:
                events.append(JobExecutionEvent(EVENT_JOB_EXECUTED, job.id, store, run_time))
        return events
