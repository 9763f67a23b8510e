"""Outcome mix per step, and the step-by-step funnel of a process."""

from __future__ import annotations

from collections import defaultdict, deque
from datetime import datetime
from typing import Any

from sqlalchemy import Select, case, distinct, func, literal, or_, select, union_all
from sqlalchemy.orm import Session

from duly.language.compiler import CompiledProcess
from duly.language.graph import transitions
from duly.language.loader import Definitions
from duly.reports.filters import (
    FACTS,
    INSTANCES,
    ROLLUP,
    TASKS,
    ReportError,
    Resolved,
    fact_conditions,
    filters_on,
    group_key,
    key_label,
    resolve,
    visible_on,
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
    """Step by step, how far the instances that started in the period got.

    The base is the instances of the process that started in the period; with a rep, team or
    visibility filter, those of them with at least one visit (closed, or a task still open)
    that counts for it. A step counts each of those instances that reached it, whenever,
    finished or not: a closed visit in the fact table, or a task opened (open now, or closed a
    moment ago). So a step's instances are a subset of the base and `share` never exceeds 1,
    and a rep's view counts the decision and action steps of their instances as an admin's
    view does. `open` counts the step's tasks open now; `query.by` does not apply.

    Args:
        session: A database session (SQLite or PostgreSQL).
        query: Filters and period (`by` is ignored).
        definitions: The loaded definitions, for the order of the steps.
        now: The end of the default period (default: now).

    Raises:
        ReportError: No process is named (a funnel follows one process's steps), or the
            query names an unknown process.
    """
    if query.process is None:
        raise ReportError(
            "a funnel follows the steps of one process, and shares across processes would "
            "mix different bases; name the process (--process, or process= in the API)"
        )
    resolved = resolve(session, query, definitions, now)
    base = started_instances(resolved)
    started = int(session.execute(select(func.count()).select_from(base.subquery())).scalar_one())
    reached_rows = reached(base)
    u = reached_rows.c
    statement = select(
        u.step,
        func.count(distinct(u.instance_id)),
        func.count(),
        func.sum(case((u.open.is_(True), 1), else_=0)),
    ).group_by(u.step)
    if query.step is not None:
        statement = statement.where(u.step == query.step)
    counts = {step: (int(i), int(v), int(o or 0)) for step, i, v, o in session.execute(statement)}
    order = step_order(resolved.process)
    steps = sorted(counts, key=lambda s: (order.get(s, len(order)), s))
    return FunnelReport(
        scope=resolved.scope,
        started=started,
        steps=[
            FunnelStep(
                step=step,
                instances=counts[step][0],
                visits=counts[step][1],
                open=counts[step][2],
                share=counts[step][0] / started if started else None,
            )
            for step in steps
        ],
    )


def started_instances(resolved: Resolved) -> Select[Any]:
    """The ids of the instances a funnel counts: started in the period, in the query's scope.

    A rep, team or visibility filter keeps the instances with a visit counting for it: a fact
    of the instance, or a task of it not yet in the fact table.
    """
    q, i = resolved.query, INSTANCES.c
    statement = select(i.id).where(
        i.process == q.process,
        i.started_at >= resolved.scope.since,
        i.started_at < resolved.scope.until,
    )
    if q.version is not None:
        statement = statement.where(i.version == q.version)
    scoped = q.team is not None or q.rep is not None
    if scoped or q.visible_teams is not None or q.visible_reps is not None:
        who = q.model_copy(update={"process": None, "step": None})
        f, t = FACTS.c, TASKS.c
        fact_scope = [*filters_on(who, f), *visible_on(who, f.team, f.assignee)]
        task_scope = [*filters_on(who, t), *visible_on(who, t.team, t.assignee)]
        statement = statement.where(
            or_(
                select(literal(1)).where(f.instance_id == i.id, *fact_scope).exists(),
                select(literal(1)).where(t.instance_id == i.id, *task_scope).exists(),
            )
        )
    return statement


def reached(base: Select[Any]) -> Any:
    """Every visit of the `base` instances, and whether it is an open task.

    Closed visits come from the facts; tasks not yet in the fact table (open, or closed a
    moment ago) from the tasks.
    """
    f, t = FACTS.c, TASKS.c
    recorded = (
        select(literal(1))
        .select_from(FACTS)
        .where(f.instance_id == t.instance_id, f.step == t.step, f.visit == t.visit)
        .exists()
    )
    closed = select(
        f.instance_id.label("instance_id"), f.step.label("step"), literal(False).label("open")
    ).where(f.instance_id.in_(base))
    tasks = select(
        t.instance_id.label("instance_id"),
        t.step.label("step"),
        (t.status == "open").label("open"),
    ).where(t.instance_id.in_(base), ~recorded)
    return union_all(closed, tasks).subquery("reached")


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
