"""Outcome mix per step, and the step-by-step funnel of a process."""

from __future__ import annotations

from collections import defaultdict, deque
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, case, func, literal, or_, select
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
    i, f, t = INSTANCES.c, FACTS.c, TASKS.c
    started = int(session.execute(select(func.count()).where(*base)).scalar_one())
    # Each instance that reached a step has exactly one visit numbered 1 of it: counting those
    # counts the instances, with no DISTINCT; a first visit is a fact, or a task not yet one
    # IN (not a join): both databases hash the few started instances once, then scan facts
    cohort = select(i.id).where(*base)
    closed = (
        select(f.step, func.sum(case((f.visit == 1, 1), else_=0)), func.count())
        # no visit opens before its instance started: the history before the period is skipped
        .where(
            f.instance_id.in_(cohort),
            f.process == query.process,
            f.opened_at >= resolved.scope.since,
        )
        .group_by(f.step)
    )
    recorded = (
        select(literal(1))
        .select_from(FACTS)
        .where(f.instance_id == t.instance_id, f.step == t.step, f.visit == t.visit)
        .exists()
    )
    tasks = (
        select(
            t.step,
            func.sum(case((t.visit == 1, 1), else_=0)),
            func.count(),
            func.sum(case((t.status == "open", 1), else_=0)),
        )
        .select_from(TASKS.join(INSTANCES, i.id == t.instance_id))
        .where(*base, ~recorded)
        .group_by(t.step)
    )
    if query.step is not None:
        closed = closed.where(f.step == query.step)
        tasks = tasks.where(t.step == query.step)
    counts: dict[str, list[int]] = {}
    for step, first, visits in session.execute(closed):
        counts[step] = [int(first or 0), int(visits), 0]
    for step, first, visits, open_now in session.execute(tasks):
        row = counts.setdefault(step, [0, 0, 0])
        row[0] += int(first or 0)
        row[1] += int(visits)
        row[2] += int(open_now or 0)
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


def started_instances(resolved: Resolved) -> list[ColumnElement[bool]]:
    """WHERE conditions on `instances` for those a funnel counts.

    They started in the period, and are in the query's scope: a rep, team or visibility
    filter keeps the instances with a visit counting for it (a fact, or a task).
    """
    q, i = resolved.query, INSTANCES.c
    where = [
        i.process == q.process,
        i.started_at >= resolved.scope.since,
        i.started_at < resolved.scope.until,
    ]
    if q.version is not None:
        where.append(i.version == q.version)
    scoped = q.team is not None or q.rep is not None
    if scoped or q.visible_teams is not None or q.visible_reps is not None:
        who = q.model_copy(update={"process": None, "step": None})
        # aliases: the queries these conditions go into read the facts and tasks themselves
        f, t = FACTS.alias("scope_facts").c, TASKS.alias("scope_tasks").c
        fact_scope = [*filters_on(who, f), *visible_on(who, f.team, f.assignee)]
        task_scope = [*filters_on(who, t), *visible_on(who, t.team, t.assignee)]
        where.append(
            or_(
                select(literal(1)).where(f.instance_id == i.id, *fact_scope).exists(),
                select(literal(1)).where(t.instance_id == i.id, *task_scope).exists(),
            )
        )
    return where


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
