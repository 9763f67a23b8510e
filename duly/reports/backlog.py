"""Backlog and overdue right now: the open tasks, grouped."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Integer, case, func, select
from sqlalchemy.orm import Session

from duly.language.loader import Definitions
from duly.reports.filters import TASKS, group_key, key_label, open_task_conditions, resolve
from duly.reports.models import BacklogReport, BacklogRow, ReportQuery


def backlog(
    session: Session,
    query: ReportQuery,
    *,
    definitions: Definitions | None = None,
    now: datetime | None = None,
) -> BacklogReport:
    """Tasks open now, and how many of them are past their due time, per `query.by` and overall.

    The period does not apply (a backlog is now), except that with `by="week"` a task opened
    before the period has the key None.

    Args:
        session: A database session (SQLite or PostgreSQL).
        query: Filters and grouping.
        definitions: The loaded definitions, for the calendar's time zone (weeks).
        now: The moment "overdue" is judged at (default: now).

    Raises:
        ReportError: The query names an unknown process.
    """
    resolved = resolve(session, query, definitions, now)
    t = TASKS.c
    source, where = open_task_conditions(resolved, period=False)
    key = group_key(query.by, TASKS, resolved)
    keys = [key.label("k")] if key is not None else []
    overdue = case((t.due_at.is_not(None) & (t.due_at < resolved.scope.now), 1), else_=0)
    statement = (
        select(
            *keys,
            func.count().label("open"),
            func.sum(overdue).cast(Integer).label("overdue"),
            func.min(t.opened_at).label("oldest"),
        )
        .select_from(source)
        .where(*where)
        .group_by(*keys)
    )
    rows: list[BacklogRow] = []
    total = BacklogRow(key=None)
    results: list[tuple[Any, ...]] = [tuple(row) for row in session.execute(statement)]
    results.sort(key=lambda r: (r[0] is None, r[0] if r[0] is not None else 0) if keys else 0)
    for values in results:
        oldest = values[-1]
        row = BacklogRow(
            key=key_label(query.by, values[0], resolved) if keys else None,
            open=int(values[-3]),
            overdue=int(values[-2] or 0),
            oldest_opened_at=oldest,
        )
        total.open += row.open
        total.overdue += row.overdue
        if oldest is not None and (
            total.oldest_opened_at is None or oldest < total.oldest_opened_at
        ):
            total.oldest_opened_at = oldest
        if keys:
            rows.append(row)
    return BacklogReport(scope=resolved.scope, total=total, rows=rows)
