"""A monitor measuring a gauge reported by events (a helpdesk's backlog), with the same
thresholds and hysteresis as duly's own measures, on a real (time-skipping) Temporal."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlmodel import col, select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from duly.language.errors import DefinitionError
from duly.language.loader import Definitions, load_definitions
from duly.language.model import Gauge
from duly.monitors import measures
from duly.monitors.scheduler import Scheduler, monitor_workflow_id
from duly.settings import Settings
from duly.store.crud import sync_org
from duly.store.db import SessionFactory, create_all, make_engine, session_factory, write_session
from duly.store.models import Alert, InboundEvent
from duly.unheard import heard
from duly.worker import build_worker
from workflows.monitor import MonitorWorkflow

ROOT = Path(__file__).resolve().parents[2]
HELPDESK = """\
monitor: helpdesk-backlog
title: Keep the helpdesk's support queue under 40
schedule: {every: 15 minutes}
measure: gauge
gauge:
  event: helpdesk.backlog
  value: backlog
  where: {queue: support}
filter: {team: support}
threshold: {above: 40, recover_at: 35}
notify: [manager]
"""
T0 = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)


def folder_with(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "definitions"
    shutil.copytree(ROOT / "definitions", folder, dirs_exist_ok=True)
    (folder / "monitors" / "helpdesk-backlog.yaml").write_text(text, encoding="utf-8")
    return folder


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        load_definitions(folder_with(tmp_path, text))
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize(
    ("change", "where", "expected"),
    [
        (
            (
                "gauge:\n  event: helpdesk.backlog\n  value: backlog\n  where: {queue: support}\n",
                "",
            ),
            "4:10",
            "measure 'gauge' reads a value reported by events",
        ),
        (("measure: gauge", "measure: open_tasks"), "6:3", "`gauge:` is read only by"),
        (
            ("filter: {team: support}", "filter: {process: support-case}"),
            "9:19",
            "a gauge counts no tasks, so 'filter.process' has nothing to narrow",
        ),
        (
            ("value: backlog", "value: 'backlog count'"),
            "7:10",
            "'backlog count' is not a path in the event's data",
        ),
    ],
)
def test_a_misused_gauge_is_refused_with_file_line_and_column(
    tmp_path: Path, change: tuple[str, str], where: str, expected: str
) -> None:
    found = problems_of(tmp_path, HELPDESK.replace(*change))
    assert len(found) == 1, found
    assert f"monitors/helpdesk-backlog.yaml:{where}: " in found[0]
    assert expected in found[0]


def test_a_gauge_event_is_heard_so_it_is_not_kept_as_unheard(tmp_path: Path) -> None:
    definitions = load_definitions(folder_with(tmp_path, HELPDESK))
    assert heard(definitions, "helpdesk.backlog")
    assert not heard(definitions, "helpdesk.other")


def report(sessions: SessionFactory, at: datetime, data: dict[str, Any]) -> None:
    """An event as received at `at`."""
    with write_session(sessions) as session:
        row = InboundEvent(
            id=f"evt-{uuid.uuid4()}", type="helpdesk.backlog", data=data, received_at=at
        )
        session.add(row)


def test_the_gauge_is_the_latest_matching_reading(engine: Any) -> None:
    sessions = session_factory(engine)
    spec = Gauge(event="helpdesk.backlog", value="counts.open", where={"queue": "support"})

    def value(at: datetime) -> float | None:
        with sessions() as session:
            return measures.gauge(session=session, spec=spec, at=at)

    assert value(T0) is None  # nothing reported yet: no value, nothing changes
    report(sessions, T0, {"queue": "support", "counts": {"open": 37}})
    report(sessions, T0 + timedelta(minutes=1), {"queue": "sales", "counts": {"open": 99}})
    assert value(T0 + timedelta(minutes=2)) == 37  # another queue's report does not count
    report(sessions, T0 + timedelta(minutes=3), {"queue": "support", "counts": {"open": "41"}})
    assert value(T0 + timedelta(minutes=3)) == 41
    assert value(T0 + timedelta(minutes=2)) == 37  # as of a time: later reports not yet seen
    report(sessions, T0 + timedelta(minutes=4), {"queue": "support", "counts": {"open": "many"}})
    assert value(T0 + timedelta(minutes=5)) is None  # not a number: no reading, no alert


def just_before_now() -> datetime:
    """A second ago: received before a check that starts now, whatever clock it reads."""
    return datetime.now(UTC) - timedelta(seconds=1)


@dataclass
class Check:
    scheduler: Scheduler
    client: Client
    sessions: SessionFactory

    async def at(self, at: datetime) -> Any:
        assert await self.scheduler.fire("helpdesk-backlog", at)
        handle = self.client.get_workflow_handle_for(
            MonitorWorkflow.run, monitor_workflow_id("helpdesk-backlog", at)
        )
        return await handle.result()


@pytest_asyncio.fixture(loop_scope="session")
async def check(
    time_skipping_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> AsyncIterator[Check]:
    definitions: Definitions = load_definitions(folder_with(tmp_path, HELPDESK))
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'duly.db'}", task_queue=task_queue)
    engine = make_engine(settings.database_url)
    create_all(engine)
    sessions = session_factory(engine)
    with write_session(sessions) as session:
        sync_org(session=session, org=definitions.org)
    scheduler = Scheduler(time_skipping_env.client, engine)
    scheduler.add_monitors(definitions, task_queue=task_queue)
    async with build_worker(time_skipping_env.client, settings, task_queue=task_queue):
        yield Check(scheduler, time_skipping_env.client, sessions)
    engine.dispose()


async def test_a_reported_backlog_alerts_once_and_recovers_once_below_recover_at(
    check: Check,
) -> None:
    start = T0 + timedelta(days=int(uuid.uuid4().int % 1000) * 7)  # slots of this test's own
    # reported a moment before the check measures, as of the Temporal server's clock
    # (`workflow.now()`): a row stamped with this process's clock alone can come out a
    # millisecond after the check's time, which the server keeps to the millisecond
    report(check.sessions, just_before_now(), {"queue": "support", "backlog": 41})
    crossed = await check.at(start)
    assert (crossed.value, crossed.state, crossed.transition) == (41, "alerting", "crossed")
    assert crossed.notified == ["omar"]  # the support team's manager

    report(check.sessions, just_before_now(), {"queue": "support", "backlog": 37})
    hovering = await check.at(start + timedelta(minutes=15))
    assert (hovering.value, hovering.state, hovering.transition) == (37, "alerting", None)

    report(check.sessions, just_before_now(), {"queue": "support", "backlog": 34})
    recovered = await check.at(start + timedelta(minutes=30))
    assert (recovered.value, recovered.state, recovered.transition) == (34, "ok", "recovered")

    with check.sessions() as session:
        alerts = list(session.exec(select(Alert).order_by(col(Alert.id))))
    assert [(a.level, a.recipient) for a in alerts] == [("threshold", "omar"), ("recovery", "omar")]
    assert "backlog reported by helpdesk.backlog (queue support) is 41" in alerts[0].message
