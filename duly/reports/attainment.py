"""SLA attainment against the process goal: met, breached (open and overdue included), rungs.

One GROUP BY over the fact table's visits that had an SLA (`sla_met` set), and one over the
open tasks already past their due time, which count as breached: a step still open past its
due time has missed it, whenever it closes. Both are merged per group in Python (a few rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, case, func, select
from sqlalchemy.orm import Session

from duly.language.loader import Definitions
from duly.reports.filters import (
    ROLLUP,
    TASKS,
    Resolved,
    fact_conditions,
    group_key,
    key_label,
    open_task_conditions,
    resolve,
)
from duly.reports.models import AttainmentReport, AttainmentRow, Grouping, ReportQuery

DEFAULT_RUNGS = 8
"""Rungs counted when the process (and so its longest ladder) is unknown."""


@dataclass
class Counts:
    """Attainment counts of one group, keyed by the raw values of its GROUP BY keys."""

    met: int = 0
    breached: int = 0
    open_overdue: int = 0
    escalated: int = 0
    rungs: dict[int, int] = field(default_factory=dict)

    def add(self, other: Counts) -> None:
        """Add another group's counts to these."""
        self.met += other.met
        self.breached += other.breached
        self.open_overdue += other.open_overdue
        self.escalated += other.escalated
        for rung, count in other.rungs.items():
            self.rungs[rung] = self.rungs.get(rung, 0) + count

    def row(self, key: str | None, goal: float | None) -> AttainmentRow:
        """These counts as a report row (attainment None when nothing was measured)."""
        breached = self.breached + self.open_overdue
        measured = self.met + breached
        attainment = self.met / measured if measured else None
        return AttainmentRow(
            key=key,
            met=self.met,
            breached=breached,
            open_overdue=self.open_overdue,
            measured=measured,
            attainment=attainment,
            meets_goal=None if attainment is None or goal is None else attainment >= goal - 1e-9,
            escalated=self.escalated,
            rungs={r: n for r, n in sorted(self.rungs.items()) if n},
        )


def longest_ladder(resolved: Resolved) -> int:
    """The most rungs any SLA of the process has (DEFAULT_RUNGS when the process is unknown)."""
    if resolved.process is None:
        return DEFAULT_RUNGS
    spec = resolved.process.spec
    ladders = [len(clock.escalate) for clock in spec.clocks.values()]
    for step in spec.steps.values():
        sla = getattr(step, "sla", None)
        if sla is not None:
            ladders.append(len(sla.escalate))
    return max(ladders, default=0)


def attainment_counts(
    session: Session,
    resolved: Resolved,
    by: Sequence[Grouping],
    *,
    rungs: bool = True,
) -> dict[tuple[Any, ...], Counts]:
    """Attainment counts per combination of `by` keys, computed by the database.

    Args:
        session: A database session.
        resolved: The query, resolved (`duly.reports.filters.resolve`).
        by: Group by these, in order (empty: one group, key `()`).
        rungs: Also count visits by the highest rung they reached.

    Returns:
        Counts per key tuple (a week is its index in `resolved.weeks`).
    """
    table = resolved.facts
    fact_keys = [group_key(g, table, resolved) for g in by]
    c = table.c
    # A rollup row stands for `visits` facts; a fact for one
    weight: Any = c.visits if table is ROLLUP else 1
    columns: list[Any] = [
        func.sum(case((c.sla_met.is_(True), weight), else_=0)).label("met"),
        func.sum(case((c.sla_met.is_(False), weight), else_=0)).label("breached"),
        func.sum(case((c.highest_rung > 0, weight), else_=0)).label("escalated"),
    ]
    ladder = longest_ladder(resolved) if rungs else 0
    for rung in range(1, ladder + 1):
        # The last column also takes anything higher, should a ladder have grown
        test = c.highest_rung == rung if rung < ladder else c.highest_rung >= rung
        columns.append(func.sum(case((test, weight), else_=0)).label(f"rung_{rung}"))
    keys = [k.label(f"k{i}") for i, k in enumerate(fact_keys) if k is not None]
    facts = (
        select(*keys, *columns)
        .where(*fact_conditions(resolved, table=table), c.sla_met.is_not(None))
        .group_by(*(k for k in fact_keys if k is not None))
    )
    result: dict[tuple[Any, ...], Counts] = {}
    for row in session.execute(facts):
        values = tuple(row)
        key = _normal(by, values[: len(keys)], resolved)
        counts = values[len(keys) :]
        result.setdefault(key, Counts()).add(
            Counts(
                met=int(counts[0] or 0),
                breached=int(counts[1] or 0),
                escalated=int(counts[2] or 0),
                rungs={r: int(n or 0) for r, n in enumerate(counts[3:], start=1)},
            )
        )
    source, where = open_task_conditions(resolved, period=True)
    t = TASKS.c
    task_keys = [group_key(g, TASKS, resolved) for g in by]
    labelled = [k.label(f"k{i}") for i, k in enumerate(task_keys) if k is not None]
    overdue = (
        select(*labelled, func.count().cast(Integer).label("n"))
        .select_from(source)
        .where(*where, t.due_at.is_not(None), t.due_at < resolved.scope.now)
        .group_by(*(k for k in task_keys if k is not None))
    )
    for row in session.execute(overdue):
        values = tuple(row)
        key = _normal(by, values[: len(labelled)], resolved)
        result.setdefault(key, Counts()).open_overdue += int(values[-1])
    return result


def _normal(by: Sequence[Grouping], values: Sequence[Any], resolved: Resolved) -> tuple[Any, ...]:
    """Group keys as one shape whatever they were read from: weeks as their index."""
    return tuple(
        resolved.week_of(value) if grouping == "week" else value
        for grouping, value in zip(by, values, strict=True)
    )


def attainment(
    session: Session,
    query: ReportQuery,
    *,
    definitions: Definitions | None = None,
    now: datetime | None = None,
) -> AttainmentReport:
    """SLA attainment against the process goal, per `query.by` and overall.

    A visit is measured when its step had an SLA: met, or breached; a task still open past its
    due time counts as breached now. Attainment is met / (met + breached). Escalations count
    closed visits by the highest rung of the ladder they reached (1 = the first rung).

    Args:
        session: A database session (SQLite or PostgreSQL).
        query: Filters, period and grouping.
        definitions: The loaded definitions, for the goal and the calendar's time zone.
        now: The moment "open past due" is judged at (default: now).

    Raises:
        ReportError: The query names an unknown process.
    """
    resolved = resolve(session, query, definitions, now)
    by = (query.by,) if query.by else ()
    counts = attainment_counts(session, resolved, by)
    goal = resolved.scope.goal
    total = Counts()
    rows = []
    for key, group in sorted(counts.items(), key=lambda item: _order(item[0])):
        total.add(group)
        if query.by is not None:
            rows.append(group.row(key_label(query.by, key[0], resolved), goal))
    return AttainmentReport(scope=resolved.scope, total=total.row(None, goal), rows=rows)


def _order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    """Sort None last and keep ints (weeks) in order."""
    return tuple((value is None, value if value is not None else 0) for value in key)
