"""The shipped support-backlog monitor end to end: a firing starts MonitorWorkflow on a real
(time-skipping) Temporal, duly's worker measures the real store and alerts the support manager."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest_asyncio
from sqlmodel import col, select
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from duly.language.loader import Definitions
from duly.monitors.messages import MonitorResult
from duly.monitors.scheduler import Scheduler, monitor_workflow_id
from duly.settings import Settings
from duly.store.crud import sync_org
from duly.store.db import SessionFactory, create_all, make_engine, session_factory, write_session
from duly.store.models import Alert, Delivery, MonitorState
from duly.worker import build_worker
from workflows.monitor import MonitorWorkflow
from workflows.sandbox import workflow_runner

from .conftest import add_instance, close_tasks, open_tasks

MONDAY_10_15_BERLIN = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
TUESDAY_10_15_BERLIN = datetime(2026, 12, 1, 9, 15, tzinfo=UTC)
SATURDAY_NOON_BERLIN = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)
# Each test fires slots of its own: workflow ids outlive a test on the session's server


@dataclass
class Monitors:
    scheduler: Scheduler
    client: Client
    sessions: SessionFactory

    async def check(self, at: datetime) -> MonitorResult | None:
        """Fire the support-backlog slot at `at`; its result when this firing started it."""
        if not await self.scheduler.fire("support-backlog", at):
            return None
        handle = self.client.get_workflow_handle_for(
            MonitorWorkflow.run, monitor_workflow_id("support-backlog", at)
        )
        return await handle.result()

    def alerts(self) -> list[Alert]:
        with self.sessions() as session:
            return list(session.exec(select(Alert).order_by(col(Alert.id))))


@pytest_asyncio.fixture(loop_scope="session")
async def monitors(
    time_skipping_env: WorkflowEnvironment,
    definitions: Definitions,
    task_queue: str,
    tmp_path: Path,
) -> AsyncIterator[Monitors]:
    """duly's worker on a fresh SQLite store, and a scheduler (not started) to fire slots."""
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'duly.db'}", task_queue=task_queue)
    engine = make_engine(settings.database_url)
    create_all(engine)
    sessions = session_factory(engine)
    with write_session(sessions) as session:
        sync_org(session=session, org=definitions.org)
    client = time_skipping_env.client
    scheduler = Scheduler(client, engine)
    scheduler.add_monitors(definitions, task_queue=task_queue)
    async with build_worker(client, settings, task_queue=task_queue):
        yield Monitors(scheduler, client, sessions)
    engine.dispose()


async def test_support_backlog_alerts_the_support_manager_once_then_once_on_recovery(
    monitors: Monitors,
) -> None:
    add_instance(monitors.sessions)
    open_tasks(monitors.sessions, 41)

    first = await monitors.check(MONDAY_10_15_BERLIN)
    assert first is not None
    assert (first.value, first.state, first.transition, first.notified) == (
        41,
        "alerting",
        "crossed",
        ["omar"],
    )
    [alert] = monitors.alerts()
    assert (alert.recipient, alert.level) == ("omar", "threshold")
    assert alert.event_key == "monitor/support-backlog/2026-11-30T09:15Z/crossed"

    later = await monitors.check(MONDAY_10_15_BERLIN.replace(minute=30))
    assert later is not None and (later.value, later.state, later.transition) == (
        41,
        "alerting",
        None,
    )
    assert len(monitors.alerts()) == 1

    close_tasks(monitors.sessions, 6)
    back = await monitors.check(MONDAY_10_15_BERLIN.replace(minute=45))
    assert back is not None
    assert (back.value, back.state, back.transition, back.notified) == (
        35,
        "ok",
        "recovered",
        ["omar"],
    )
    assert [(a.recipient, a.level) for a in monitors.alerts()] == [
        ("omar", "threshold"),
        ("omar", "recovery"),
    ]
    with monitors.sessions() as session:
        state = session.get_one(MonitorState, "support-backlog")
        emails = session.exec(select(Delivery.user_id, Delivery.kind)).all()
    assert (state.state, state.last_value, state.last_slot) == ("ok", 35, "2026-11-30T09:45Z")
    assert sorted(emails) == [("omar", "alert.recovery"), ("omar", "alert.threshold")]


async def test_a_slot_fired_by_two_schedulers_at_once_runs_once(
    monitors: Monitors, definitions: Definitions, task_queue: str
) -> None:
    add_instance(monitors.sessions)
    open_tasks(monitors.sessions, 41)
    other = Scheduler(monitors.client, monitors.scheduler.engine)  # a second worker's
    other.add_monitors(definitions, task_queue=task_queue)
    started = await asyncio.gather(
        monitors.scheduler.fire("support-backlog", TUESDAY_10_15_BERLIN),
        other.fire("support-backlog", TUESDAY_10_15_BERLIN),
    )
    assert sorted(started) == [False, True]  # the second start is refused: the id names the slot
    handle = monitors.client.get_workflow_handle_for(
        MonitorWorkflow.run, monitor_workflow_id("support-backlog", TUESDAY_10_15_BERLIN)
    )
    assert (await handle.result()).notified == ["omar"]
    assert await monitors.check(TUESDAY_10_15_BERLIN) is None  # and again later
    assert len(monitors.alerts()) == 1


async def test_a_slot_outside_the_desks_open_hours_is_skipped(monitors: Monitors) -> None:
    add_instance(monitors.sessions)
    open_tasks(monitors.sessions, 41)
    assert await monitors.check(SATURDAY_NOON_BERLIN) is None
    with monitors.sessions() as session:
        assert session.get(MonitorState, "support-backlog") is None  # nothing ran
    assert monitors.alerts() == []


async def test_a_saved_monitor_history_replays_on_todays_code() -> None:
    """MonitorWorkflow stays deterministic: a recorded check of support-backlog replays."""
    history = WorkflowHistory.from_json(
        "monitor/support-backlog/2026-11-30T09:15Z",
        (Path(__file__).parent / "histories" / "support-backlog.json").read_text(),
    )
    replayer = Replayer(
        workflows=[MonitorWorkflow],
        workflow_runner=workflow_runner(),
        data_converter=pydantic_data_converter,
    )
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None
