"""The scheduler on real servers: two workers, each with its scheduler, on one database and one
Temporal dev server, fire a short-interval monitor; every slot runs once and alerts once."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from conftest import ROOT, Inbox
from sqlalchemy import Engine
from sqlmodel import col, select
from structlog.testing import capture_logs
from temporalio.testing import WorkflowEnvironment

from duly.language.loader import Definitions, load_definitions
from duly.monitors.scheduler import (
    JOB_TABLE,
    Periodic,
    Scheduler,
    interval_trigger,
    monitor_trigger,
    scheduling,
    slot_text,
    slot_workflow_id,
)
from duly.settings import Settings
from duly.store.db import create_all, make_engine, session_factory
from duly.store.models import Alert, MonitorCheck, MonitorState
from duly.temporal_client import connect
from duly.worker import prepare_database, run_worker

from .conftest import add_instance, open_tasks

FAST_MONITOR = """\
monitor: fast-backlog
title: Keep the support backlog under 40, checked every second
schedule: {every: 1 second}
measure: open_tasks
filter: {process: support-case}
threshold: {above: 40, recover_at: 35}
notify: [manager]
"""


def definitions_with(tmp_path: Path, monitors: dict[str, str]) -> Path:
    """A copy of the shipped definitions whose monitors/ holds just `monitors`."""
    folder = tmp_path / "definitions"
    shutil.copytree(ROOT / "definitions", folder, dirs_exist_ok=True)
    shutil.rmtree(folder / "monitors")
    (folder / "monitors").mkdir()
    for name, text in monitors.items():
        (folder / "monitors" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return folder


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def test_two_workers_with_their_schedulers_run_each_slot_once_and_alert_once(
    dev_server_env: WorkflowEnvironment,
    smtp: tuple[Settings, Inbox],
    task_queue: str,
    tmp_path: Path,
) -> None:
    mail, inbox = smtp
    definitions = load_definitions(definitions_with(tmp_path, {"fast-backlog": FAST_MONITOR}))
    settings = mail.model_copy(
        update={"database_url": f"sqlite:///{tmp_path / 'duly.db'}", "task_queue": task_queue}
    )
    engine = prepare_database(settings, definitions)
    sessions = session_factory(engine)
    add_instance(sessions)
    open_tasks(sessions, 41)

    def checks() -> list[MonitorCheck]:
        with sessions() as session:
            return list(session.exec(select(MonitorCheck).order_by(col(MonitorCheck.slot))))

    client = dev_server_env.client
    # Each worker with a connection of its own, as two processes would have
    other = await connect(client.service_client.config.target_host, client.namespace)
    stop = asyncio.Event()
    with capture_logs() as logs:
        workers = [
            asyncio.create_task(
                run_worker(each, settings, stop, task_queue=task_queue, definitions=definitions)
            )
            for each in (client, other)
        ]
        try:
            await until(lambda: len(checks()) >= 4 and len(inbox.envelopes) >= 1)
        finally:
            stop.set()
            await asyncio.gather(*workers)

    recorded = checks()
    slots = [check.slot for check in recorded]
    assert len(slots) == len(set(slots)) >= 4
    started = [e["workflow_id"] for e in logs if e["event"] == "slot_started"]
    refused = [e["workflow_id"] for e in logs if e["event"] == "slot_already_started"]
    # Each slot was started by one of the two schedulers, never by both
    assert len(started) == len(set(started))
    assert set(refused) <= set(started)
    assert {f"monitor/fast-backlog/{slot}" for slot in slots} <= set(started)
    ids = [execution.id async for execution in client.list_workflows(f'TaskQueue = "{task_queue}"')]
    assert sorted(ids) == sorted(set(started))  # one execution per slot on the server
    # 41 open tasks at every check: one crossing, one alert, one email to Omar
    assert [check.transition for check in recorded].count("crossed") == 1
    with sessions() as session:
        alerts = session.exec(select(Alert)).all()
        state = session.get_one(MonitorState, "fast-backlog")
    assert [(a.recipient, a.level) for a in alerts] == [("omar", "threshold")]
    assert (state.state, state.last_value) == ("alerting", 41)
    await asyncio.sleep(1.2)  # a second worker-free second: nothing fires after the stop
    assert len(checks()) == len(recorded)
    # A late third scheduler firing a slot that already ran is refused by the server
    late = Scheduler(other, engine)
    late.add_monitors(definitions, task_queue=task_queue)
    ran = datetime.fromisoformat(recorded[0].slot)
    assert await late.fire("fast-backlog", ran) is False
    assert len(inbox.envelopes) == 1 and inbox.envelopes[0].rcpt_tos == ["omar@example.com"]
    engine.dispose()


async def test_slots_are_the_same_whichever_worker_registered_the_job(
    dev_server_env: WorkflowEnvironment, engine: Engine
) -> None:
    first, second = (
        Scheduler(dev_server_env.client, engine),
        Scheduler(dev_server_env.client, engine),
    )

    async def nothing(_client: object, _at: datetime) -> bool:
        return False

    every = timedelta(minutes=15)
    first.add_periodic("summary", interval_trigger(every), nothing)
    await first.start()
    at_first = first.next_fire_time("summary")
    await asyncio.sleep(1.1)
    second.add_periodic("summary", interval_trigger(every), nothing)
    await second.start()  # replaces the stored job, a second later
    assert at_first is not None and second.next_fire_time("summary") == at_first
    assert at_first.minute % 15 == 0 and at_first.second == 0
    assert slot_workflow_id("summary", at_first) == f"summary/{at_first:%Y-%m-%dT%H:%M}Z"
    await first.stop()
    await second.stop()


async def test_changed_definitions_replace_their_jobs_and_drop_deleted_monitors(
    dev_server_env: WorkflowEnvironment, engine: Engine, tmp_path: Path
) -> None:
    hourly = FAST_MONITOR.replace("{every: 1 second}", "{every: 1 hour}")
    before = load_definitions(
        definitions_with(
            tmp_path / "v1",
            {"fast-backlog": hourly, "other": hourly.replace("fast-backlog", "other")},
        )
    )
    cron = FAST_MONITOR.replace("{every: 1 second}", '{cron: "0 9 * * mon", during: eu-berlin}')
    after = load_definitions(definitions_with(tmp_path / "v2", {"fast-backlog": cron}))

    async def stored(definitions: Definitions) -> dict[str, datetime | None]:
        scheduler = Scheduler(dev_server_env.client, engine)
        scheduler.add_monitors(definitions, task_queue="unused")
        await scheduler.start()
        try:
            return {job: scheduler.next_fire_time(job) for job in ("fast-backlog", "other")}
        finally:
            await scheduler.stop()

    first = await stored(before)
    assert first["other"] is not None
    assert first["fast-backlog"] is not None and first["fast-backlog"].minute == 0
    second = await stored(after)
    assert second["other"] is None  # deleted from definitions/: its job is gone
    monday_nine = second["fast-backlog"]
    assert monday_nine is not None
    local = monday_nine.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)  # cron read in Berlin time
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(f"SELECT id FROM {JOB_TABLE}").all()
    assert [row[0] for row in rows] == ["fast-backlog"]


def test_a_cron_monitor_without_a_calendar_is_read_in_utc(definitions: Definitions) -> None:
    spec = definitions.monitors["support-backlog"].model_copy(
        update={
            "schedule": definitions.monitors["support-backlog"].schedule.model_copy(
                update={"every": None, "cron": "30 6 * * *", "during": None}
            )
        }
    )
    trigger = monitor_trigger(spec)
    now = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert trigger.get_next_fire_time(None, now) == datetime(2026, 12, 1, 6, 30, tzinfo=UTC)
    assert slot_text(datetime(2026, 12, 1, 6, 30, 5, tzinfo=UTC)) == "2026-12-01T06:30:05Z"


async def test_another_periodic_job_fires_on_the_same_scheduler_once_per_slot(
    dev_server_env: WorkflowEnvironment, tmp_path: Path, definitions: Definitions
) -> None:
    """The hook a weekly summary uses: a job of its own, fired with each slot's time."""
    engine = make_engine(f"sqlite:///{tmp_path / 'duly.db'}")
    create_all(engine)
    fired: list[datetime] = []

    async def start(_client: object, at: datetime) -> bool:
        fired.append(at)
        return True

    job = Periodic("every-second", interval_trigger(timedelta(seconds=1)), start)
    empty = Definitions(calendars=definitions.calendars, org=definitions.org)
    async with scheduling(
        dev_server_env.client, engine, empty, task_queue="unused", periodic=[job]
    ):
        await until(lambda: len(fired) >= 2)
    count = len(fired)
    await asyncio.sleep(1.1)
    assert len(fired) == count  # stopped: no more firings
    assert all(at.microsecond == 0 for at in fired) and len(set(fired)) == len(fired)
    engine.dispose()
