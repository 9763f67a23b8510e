"""The measures a monitor can check, as SQL over the task table and the step-outcome facts.

- `open_tasks`: tasks still open;
- `overdue_tasks`: open tasks whose due time has passed;
- `attainment`: of the step visits closed this period that had an SLA, the percentage whose
  SLA was met (0-100), None when none closed yet;
- `gauge`: a number reported by events (a helpdesk's backlog), the latest matching reading.

Each narrows by the monitor's `filter:` (process, team, step). Functions take keyword
arguments and read in the caller's session.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import case, func
from sqlmodel import Session, col, select

from duly.language.model import Gauge, MonitorFilter
from duly.monitors.messages import Period
from duly.store.models import InboundEvent, StepFact, Task


def period_start(at: datetime, period: Period, timezone: str = "UTC") -> datetime:
    """When the day, week (from Monday) or month holding `at` began in `timezone`, in UTC."""
    local = at.astimezone(ZoneInfo(timezone))
    day = local.date()
    if period == "week":
        day -= timedelta(days=day.weekday())
    elif period == "month":
        day = day.replace(day=1)
    return datetime.combine(day, time(), tzinfo=ZoneInfo(timezone)).astimezone(UTC)


def _narrow(statement: Any, table: type[Task] | type[StepFact], where: MonitorFilter) -> Any:
    if where.process is not None:
        statement = statement.where(col(table.process) == where.process)
    if where.team is not None:
        statement = statement.where(col(table.team) == where.team)
    if where.step is not None:
        statement = statement.where(col(table.step) == where.step)
    return statement


def open_tasks(*, session: Session, where: MonitorFilter) -> int:
    """How many tasks are open."""
    statement = select(func.count()).select_from(Task).where(col(Task.status) == "open")
    return int(session.exec(_narrow(statement, Task, where)).one())


def overdue_tasks(*, session: Session, where: MonitorFilter, at: datetime) -> int:
    """How many open tasks were due before `at`."""
    statement = (
        select(func.count())
        .select_from(Task)
        .where(col(Task.status) == "open", col(Task.due_at) < at)
    )
    return int(session.exec(_narrow(statement, Task, where)).one())


def attainment(
    *, session: Session, where: MonitorFilter, at: datetime, period: Period, timezone: str = "UTC"
) -> float | None:
    """The percentage of step visits closed this period (up to `at`) whose SLA was met.

    Visits without an SLA (`sla_met` is null) do not count either way. None when no visit
    with an SLA closed yet this period: there is nothing to compare with a threshold.
    """
    start = period_start(at, period, timezone)
    statement = (
        select(func.count(), func.sum(case((col(StepFact.sla_met).is_(True), 1), else_=0)))
        .select_from(StepFact)
        .where(
            col(StepFact.sla_met).is_not(None),
            col(StepFact.closed_at) >= start,
            col(StepFact.closed_at) <= at,
        )
    )
    total, met = session.exec(_narrow(statement, StepFact, where)).one()
    if not total:
        return None
    return 100.0 * float(met or 0) / float(total)


GAUGE_SCAN = 1000
"""How many of a gauge's latest events are looked through for one that matches `where`."""


def gauge(*, session: Session, spec: Gauge, at: datetime) -> float | None:
    """The number the latest matching event (received up to `at`) reported; None if none did.

    Events of `spec.event` are kept as received (`inbound_events`); the newest whose data has
    `spec.where`'s values gives the value at `spec.value`. A reading that is not a number
    counts as no reading, so a malformed report never alerts.
    """
    rows = session.exec(
        select(InboundEvent.data)
        .where(col(InboundEvent.type) == spec.event, col(InboundEvent.received_at) <= at)
        .order_by(col(InboundEvent.received_at).desc())
        .limit(GAUGE_SCAN)
    )
    for data in rows:
        if all(_at_path(data, path) == wanted for path, wanted in spec.where.items()):
            value = _at_path(data, spec.value)
            if isinstance(value, bool) or not isinstance(value, int | float | str):
                return None
            try:
                number = float(value)
            except ValueError:
                return None
            return number if math.isfinite(number) else None
    return None


def _at_path(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def measure(
    *,
    session: Session,
    name: str,
    where: MonitorFilter,
    at: datetime,
    period: Period = "week",
    timezone: str = "UTC",
    gauge_spec: Gauge | None = None,
) -> float | None:
    """The value of the measure called `name` (open_tasks, overdue_tasks or attainment).

    Raises:
        ValueError: `name` is not a measure.
    """
    if name == "open_tasks":
        return float(open_tasks(session=session, where=where))
    if name == "overdue_tasks":
        return float(overdue_tasks(session=session, where=where, at=at))
    if name == "attainment":
        return attainment(session=session, where=where, at=at, period=period, timezone=timezone)
    if name == "gauge" and gauge_spec is not None:
        return gauge(session=session, spec=gauge_spec, at=at)
    raise ValueError(
        f"'{name}' is not a measure; expected open_tasks, overdue_tasks, attainment or gauge "
        "(with its `gauge:`)"
    )
