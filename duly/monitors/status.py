"""Where each monitor stands, for people: its schedule, state, last value and last check."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select

from duly.language.loader import Definitions
from duly.language.model import MonitorSpec
from duly.monitors.thresholds import describe
from duly.store.models import MonitorCheck, MonitorState


class MonitorStatus(BaseModel):
    """One monitor as `duly monitors` shows it.

    Attributes:
        monitor: Its id.
        title: Its title.
        schedule: When it checks, in words: `every 15 minutes, in eu-berlin's open hours`.
        measure: What it measures, and its line: `open_tasks above 40 (recovers at 35)`.
        state: `ok` or `alerting`; `ok` before its first check.
        last_value: What the last check measured (None: nothing to measure, or not yet).
        last_checked_at: When it last checked; None before its first check.
        changed_at: When its state last changed.
        checks: How many checks are recorded.
    """

    monitor: str
    title: str
    schedule: str
    measure: str
    state: str = "ok"
    last_value: float | None = None
    last_checked_at: datetime | None = None
    changed_at: datetime | None = None
    checks: int = 0


def schedule_text(spec: MonitorSpec) -> str:
    """A monitor's schedule in words."""
    schedule = spec.schedule
    text = f"every {schedule.every}" if schedule.every is not None else f"cron {schedule.cron}"
    if schedule.during:
        text += f", in {schedule.during}'s open hours"
    return text


def monitor_statuses(*, session: Session, definitions: Definitions) -> list[MonitorStatus]:
    """Every defined monitor with its stored state, by id."""
    states = {row.monitor: row for row in session.exec(select(MonitorState))}

    counts = dict(
        session.exec(
            select(MonitorCheck.monitor, func.count()).group_by(col(MonitorCheck.monitor))
        ).all()
    )
    statuses = []
    for name, spec in sorted(definitions.monitors.items()):
        state = states.get(name)
        statuses.append(
            MonitorStatus(
                monitor=name,
                title=spec.title,
                schedule=schedule_text(spec),
                measure=f"{spec.measure} {describe(spec.threshold)}",
                state=state.state if state else "ok",
                last_value=state.last_value if state else None,
                last_checked_at=state.last_checked_at if state else None,
                changed_at=state.changed_at if state else None,
                checks=counts.get(name, 0),
            )
        )
    return statuses
