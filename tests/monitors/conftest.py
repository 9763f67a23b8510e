"""A database on SQLite and PostgreSQL (`engine`, tests/conftest.py) with the shipped org synced,
and helpers that put support-case tasks and step facts in it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, update
from sqlmodel import col, select

from duly.language.loader import Definitions
from duly.language.model import MonitorSpec
from duly.store.crud import sync_org
from duly.store.db import SessionFactory, session_factory, write_session
from duly.store.models import Instance, StepFact, Task

T0 = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)  # a Monday, 10:15 in Berlin: the desk is open
INSTANCE = "support-case/C-1/run1"


@pytest.fixture
def sessions(engine: Engine, definitions: Definitions) -> SessionFactory:
    """Sessions on a fresh database holding the shipped org (Omar manages support)."""
    with write_session(session_factory(engine)) as session:
        sync_org(session=session, org=definitions.org)
    return session_factory(engine)


@pytest.fixture
def backlog(definitions: Definitions) -> MonitorSpec:
    """The shipped support-backlog monitor."""
    return definitions.monitors["support-backlog"]


def add_instance(
    sessions: SessionFactory, instance_id: str = INSTANCE, process: str = "support-case"
) -> None:
    """Record a running instance for tasks and facts to belong to."""
    with write_session(sessions) as session:
        session.add(
            Instance(
                id=instance_id,
                workflow_id=instance_id.rsplit("/", 1)[0],
                process=process,
                version=1,
                hash="0" * 64,
                business_key=instance_id.split("/")[1],
                started_at=T0 - timedelta(days=3),
            )
        )


def open_tasks(
    sessions: SessionFactory,
    count: int,
    *,
    instance_id: str = INSTANCE,
    step: str = "respond",
    team: str = "support",
    process: str = "support-case",
    due_at: datetime | None = None,
    first_visit: int = 1,
) -> None:
    """Open `count` tasks of one instance's step (visits `first_visit`, ...)."""
    with write_session(sessions) as session:
        for visit in range(first_visit, first_visit + count):
            session.add(
                Task(
                    id=f"{instance_id}/{step}/{visit}",
                    instance_id=instance_id,
                    process=process,
                    step=step,
                    visit=visit,
                    title=f"Answer case {visit}",
                    assignee="dev",
                    team=team,
                    opened_at=T0 - timedelta(hours=2),
                    due_at=due_at,
                )
            )


def close_tasks(sessions: SessionFactory, count: int) -> None:
    """Complete `count` of the open tasks (the lowest visits first)."""
    with write_session(sessions) as session:
        ids = session.exec(
            select(Task.id).where(Task.status == "open").order_by(col(Task.visit)).limit(count)
        ).all()
        session.execute(
            update(Task)
            .where(col(Task.id).in_(ids))
            .values(status="completed", outcome="answered", closed_at=T0)
        )


def add_fact(
    sessions: SessionFactory,
    visit: int,
    *,
    closed_at: datetime,
    sla_met: bool | None,
    step: str = "respond",
    team: str = "support",
    instance_id: str = INSTANCE,
) -> None:
    """One closed step visit in the fact table."""
    with write_session(sessions) as session:
        session.add(
            StepFact(
                instance_id=instance_id,
                process="support-case",
                version=1,
                step=step,
                kind="task",
                visit=visit,
                assignee="dev",
                team=team,
                opened_at=closed_at - timedelta(hours=1),
                closed_at=closed_at,
                sla_met=sla_met,
            )
        )
