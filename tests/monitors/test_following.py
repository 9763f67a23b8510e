"""A running worker's monitors follow the published set: no restart after `duly publish`."""

from __future__ import annotations

from pathlib import Path
from zoneinfo import ZoneInfo

from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment

from duly import published
from duly.monitors.following import catch_up
from duly.monitors.scheduler import JOB_TABLE, Scheduler
from duly.store.db import session_factory, write_session

from .test_scheduler import FAST_MONITOR, definitions_with


async def test_a_publish_reschedules_the_monitors_of_a_running_scheduler(
    dev_server_env: WorkflowEnvironment, engine: Engine, tmp_path: Path
) -> None:
    hourly = FAST_MONITOR.replace("{every: 1 second}", "{every: 1 hour}")
    first = definitions_with(
        tmp_path / "v1", {"fast-backlog": hourly, "other": hourly.replace("fast-backlog", "other")}
    )
    cron = FAST_MONITOR.replace("{every: 1 second}", '{cron: "0 9 * * mon", during: eu-berlin}')
    second = definitions_with(tmp_path / "v2", {"fast-backlog": cron})
    sessions = session_factory(engine)
    with write_session(sessions) as session:
        published.publish(session, first)
    live = published.PublishedDefinitions(sessions)

    scheduler = Scheduler(dev_server_env.client, engine)
    scheduler.add_monitors(live.current(), task_queue="unused")
    await scheduler.start()
    try:
        seen = catch_up(scheduler, live, live.revision, task_queue="unused")
        assert scheduler.next_fire_time("other") is not None  # nothing new: nothing changes
        with write_session(sessions) as session:
            published.publish(session, second)
        assert catch_up(scheduler, live, seen, task_queue="unused") == (seen or 0) + 1

        assert scheduler.next_fire_time("other") is None  # withdrawn: it no longer fires
        monday_nine = scheduler.next_fire_time("fast-backlog")
        assert monday_nine is not None
        local = monday_nine.astimezone(ZoneInfo("Europe/Berlin"))
        assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)
    finally:
        await scheduler.stop()
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(f"SELECT id FROM {JOB_TABLE}").all()
    assert [row[0] for row in rows] == ["fast-backlog"]
