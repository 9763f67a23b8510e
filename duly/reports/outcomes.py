"""Outcome mix per step, and the step-by-step funnel of a process."""

from __future__ import annotations

from collections import defaultdict, deque
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from duly.language.compiler import CompiledProcess
from duly.language.graph import transitions
from duly.language.loader import Definitions
from duly.reports.filters import (
    ROLLUP,
    TASKS,
    fact_conditions,
    group_key,
    key_label,
    open_task_conditions,
    resolve,
)
from duly.reports.models import (
    FunnelReport,
    FunnelStep,
    OutcomeCount,
    OutcomeReport,
    ReportQuery,
    StepOutcomes,
)


def outcome_mix(
    session: Session,
    query: ReportQuery,
    *,
    definitions: Definitions | None = None,
    now: datetime | None = None,
) -> OutcomeReport:
    """How the visits of each task step closed: count and share per outcome.

    Task steps only (their outcome is the rep's choice), unless `query.step` names a step of
    another kind. With `query.by` (other than `step`), one mix per group and step.

    Args:
        session: A database session (SQLite or PostgreSQL).
        query: Filters, period and grouping.
        definitions: The loaded definitions, for step order and the calendar's time zone.
        now: The end of the default period (default: now).

    Raises:
        ReportError: The query names an unknown process.
    """
    resolved = resolve(session, query, definitions, now)
    table = resolved.facts
    c = table.c
    by = query.by if query.by != "step" else None
    key = group_key(by, table, resolved)
    keys = [key.label("k")] if key is not None else []
    where = fact_conditions(resolved, table=table)
    if query.step is None:
        where.append(c.kind == "task")
    counted: Any = func.sum(c.visits) if table is ROLLUP else func.count()
    statement = (
        select(*keys, c.step, c.outcome, counted.label("n"))
        .where(*where)
        .group_by(*keys, c.step, c.outcome)
    )
    mixes: dict[tuple[Any, str], dict[str | None, int]] = defaultdict(dict)
    for row in session.execute(statement):
        values = tuple(row)
        group = (resolved.week_of(values[0]) if by == "week" else values[0]) if keys else None
        mix = mixes[(group, values[-3])]
        mix[values[-2]] = mix.get(values[-2], 0) + int(values[-1])
    order = step_order(resolved.process)
    rows = []
    for (group, step), mix in sorted(
        mixes.items(),
        key=lambda item: (
            (item[0][0] is None, item[0][0] if item[0][0] is not None else 0),
            order.get(item[0][1], len(order)),
            item[0][1],
        ),
    ):
        visits = sum(mix.values())
        outcomes = [
            OutcomeCount(outcome=outcome, count=n, share=n / visits)
            for outcome, n in sorted(mix.items(), key=lambda o: (-o[1], o[0] is None, o[0] or ""))
        ]
        rows.append(
            StepOutcomes(
                key=key_label(by, group, resolved) if by else (step if query.by else None),
                step=step,
                visits=visits,
                outcomes=outcomes,
            )
        )
    return OutcomeReport(scope=resolved.scope, rows=rows)


def funnel(
    session: Session,
    query: ReportQuery,
    *,
    definitions: Definitions | None = None,
    now: datetime | None = None,
) -> FunnelReport:
    """Step by step, how many instances reached each step in the period.

    An instance counts at a step when its first visit of it was opened in the period and has
    closed (so is in the fact table).

    Steps come in the order an instance meets them (breadth first from `start`), then any
    others by name. `share` is a step's instances over the first step's; `open` counts tasks
    of the step open now (not yet in the fact table). `query.by` does not apply.

    Args:
        session: A database session (SQLite or PostgreSQL).
        query: Filters and period (`by` is ignored).
        definitions: The loaded definitions, for the order of the steps.
        now: The end of the default period (default: now).

    Raises:
        ReportError: The query names an unknown process.
    """
    resolved = resolve(session, query, definitions, now)
    table = resolved.facts
    c = table.c
    # Each instance that reached a step has exactly one visit numbered 1 of it
    if table is ROLLUP:
        counts: list[Any] = [func.sum(c.first_visits), func.sum(c.visits)]
    else:
        counts = [func.sum(case((c.visit == 1, 1), else_=0)), func.count()]
    statement = (
        select(c.step, *counts).where(*fact_conditions(resolved, table=table)).group_by(c.step)
    )
    reached = {step: (int(i), int(v)) for step, i, v in session.execute(statement)}
    source, where = open_task_conditions(resolved, period=True)
    t = TASKS.c
    open_now = {
        step: int(n)
        for step, n in session.execute(
            select(t.step, func.count()).select_from(source).where(*where).group_by(t.step)
        )
    }
    order = step_order(resolved.process)
    steps = sorted(set(reached) | set(open_now), key=lambda s: (order.get(s, len(order)), s))
    first = reached.get(steps[0], (0, 0))[0] if steps else 0
    return FunnelReport(
        scope=resolved.scope,
        steps=[
            FunnelStep(
                step=step,
                instances=reached.get(step, (0, 0))[0],
                visits=reached.get(step, (0, 0))[1],
                open=open_now.get(step, 0),
                share=reached.get(step, (0, 0))[0] / first if first else None,
            )
            for step in steps
        ],
    )


def step_order(process: CompiledProcess | None) -> dict[str, int]:
    """Steps in the order an instance meets them: breadth first from `start`, then the rest."""
    if process is None:
        return {}
    spec = process.spec
    order: dict[str, int] = {}
    queue = deque([spec.start])
    while queue:
        step = queue.popleft()
        if step in order or step not in spec.steps:
            continue
        order[step] = len(order)
        queue.extend(edge.target for edge in transitions(spec.steps[step]))
    for step in spec.steps:
        order.setdefault(step, len(order))
    return order
