"""A `ReportQuery` as SQL: the period and its weeks, the goal, WHERE conditions, GROUP BY keys.

Everything here builds SQLAlchemy Core expressions that run unchanged on SQLite and PostgreSQL.
Weeks are computed in Python as UTC instants (Monday 00:00 in the report's time zone, daylight
saving time included) and bucketed in SQL by a CASE over those instants, so a week is the same
week on both databases and no database time-zone support is needed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, Table, and_, literal, or_, select
from sqlalchemy.orm import Session

from duly.language.compiler import CompiledProcess
from duly.language.loader import Definitions
from duly.reports.models import DEFAULT_WEEKS, MAX_WEEKS, Grouping, ReportQuery, ReportScope, Week
from duly.store.models import Definition, Instance, StepFact, StepFactWeek, Task
from duly.store.rollup import week_index
from duly.store.types import utc_now

FACTS: Table = StepFact.__table__  # type: ignore[attr-defined]
ROLLUP: Table = StepFactWeek.__table__  # type: ignore[attr-defined]
USE_ROLLUP = True
"""Read the weekly rollup when a query allows (tests turn it off to check both paths agree)."""
# Periods must lie in these years: far enough apart for any sales history, and away from the
# ends of `datetime`, where moving to a calendar's time zone overflows
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
TASKS: Table = Task.__table__  # type: ignore[attr-defined]
INSTANCES: Table = Instance.__table__  # type: ignore[attr-defined]


class ReportError(ValueError):
    """A report cannot be made as asked (an unknown process, say); the message says why."""


@dataclass(frozen=True)
class Resolved:
    """A query with its period, weeks, time zone and goal worked out."""

    query: ReportQuery
    scope: ReportScope
    process: CompiledProcess | None
    whole_weeks: bool = False

    @property
    def weeks(self) -> list[Week]:
        """The weeks of the period, oldest first."""
        return self.scope.weeks

    @property
    def facts(self) -> Table:
        """Where the visits are counted from: the weekly rollup, or the fact table.

        The rollup when the query is of one process over whole weeks of its calendar (the
        rollup's grid), the fact table otherwise.
        """
        whole = self.whole_weeks and self.process is not None
        return ROLLUP if USE_ROLLUP and whole else FACTS

    def week_of(self, value: Any) -> int | None:
        """A week group key as the index of the week in `weeks`.

        From the fact table it is that index already; from the rollup, the week's start.
        """
        if value is None:
            return None
        if isinstance(value, datetime):
            starts = {w.starts_at: i for i, w in enumerate(self.scope.weeks)}
            return starts.get(value.astimezone(UTC))
        return int(value)


def resolve(
    session: Session,
    query: ReportQuery,
    definitions: Definitions | None,
    now: datetime | None = None,
) -> Resolved:
    """Work out a query's period, weeks, time zone and goal.

    The goal and the time zone come from the process's compiled definition: the stored one of
    `query.version` when given, else the loaded definitions', else the newest stored version.

    Raises:
        ReportError: `process` is not one duly knows, or the period is not UTC-aware.
    """
    now = (now or utc_now()).astimezone(UTC)
    process = _process(session, query, definitions)
    zone_name = process.calendar.timezone if process is not None else "UTC"
    zone = ZoneInfo(zone_name)
    if query.since is not None or query.until is not None:
        until = query.until or now
        # checked before any arithmetic: near the ends of `datetime` it would overflow
        if any(t is not None and not EARLIEST <= t <= LATEST for t in (query.since, until)):
            raise ReportError(
                f"the period must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}"
            )
        # `until` alone: the default number of weeks before it
        since = query.since or until - timedelta(weeks=query.weeks or DEFAULT_WEEKS)
        if since >= until:
            raise ReportError(f"the period is empty: since {since} is not before until {until}")
        if since < EARLIEST:
            raise ReportError(
                f"the period must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}"
            )
        first = _monday(since.astimezone(zone).date())
        last = _monday((until - timedelta(microseconds=1)).astimezone(zone).date())
        if (last - first).days // 7 >= MAX_WEEKS:
            raise ReportError(
                f"the period spans more than {MAX_WEEKS} weeks; give a later since (or weeks)"
            )
    else:
        count = query.weeks or DEFAULT_WEEKS
        last = _monday(now.astimezone(zone).date())
        first = last - timedelta(weeks=count - 1)
        since = _start_of(first, zone)
        until = _start_of(last + timedelta(weeks=1), zone)
    weeks = []
    monday = first
    while monday <= last:
        year, number, _ = monday.isocalendar()
        weeks.append(
            Week(
                start=monday,
                label=f"{year}-W{number:02d}",
                starts_at=max(_start_of(monday, zone), since),
                ends_at=min(_start_of(monday + timedelta(weeks=1), zone), until),
            )
        )
        monday += timedelta(weeks=1)
    goal = process.spec.goal if process is not None else None
    scope = ReportScope(
        process=query.process,
        version=query.version,
        step=query.step,
        team=query.team,
        rep=query.rep,
        by=query.by,
        since=since.astimezone(UTC),
        until=until.astimezone(UTC),
        timezone=zone_name,
        weeks=weeks,
        goal=float(goal.attainment) if goal is not None else None,
        now=now,
    )
    whole = since == _start_of(first, zone) and until == _start_of(last + timedelta(weeks=1), zone)
    return Resolved(query=query, scope=scope, process=process, whole_weeks=whole)


def _monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def _process(
    session: Session, query: ReportQuery, definitions: Definitions | None
) -> CompiledProcess | None:
    if query.process is None:
        return None
    loaded = definitions.processes.get(query.process) if definitions is not None else None
    if loaded is not None and (query.version is None or query.version == loaded.version):
        return loaded
    stored = select(Definition.__table__.c.compiled_json).where(  # type: ignore[attr-defined]
        Definition.__table__.c.process == query.process  # type: ignore[attr-defined]
    )
    if query.version is not None:
        stored = stored.where(Definition.__table__.c.version == query.version)  # type: ignore[attr-defined]
    stored = stored.order_by(Definition.__table__.c.version.desc()).limit(1)  # type: ignore[attr-defined]
    compiled = session.execute(stored).scalar()
    if compiled:
        try:
            return CompiledProcess.model_validate_json(compiled)
        except ValueError:
            pass  # an old or partial record: fall back to the loaded definition
    if loaded is not None:
        return loaded
    known = sorted(definitions.processes) if definitions is not None else []
    if compiled is None and query.version is None:
        raise ReportError(
            f"no process '{query.process}'"
            + (f"; known processes: {', '.join(known)}" if known else "")
        )
    return None


# --- conditions ---------------------------------------------------------------------------------


def filters_on(q: ReportQuery, columns: Any) -> list[ColumnElement[bool]]:
    """The query's process, step, team and rep filters on a table with those columns."""
    return _filters(q, columns)


def visible_on(q: ReportQuery, team: Any, assignee: Any) -> list[ColumnElement[bool]]:
    """The query's visibility restriction (teams, reps) on a table's team and assignee."""
    return _visible(q, team, assignee)


def _filters(q: ReportQuery, columns: Any) -> list[ColumnElement[bool]]:
    """The query's process, step, team and rep filters on a table with those columns."""
    wanted = {"process": q.process, "step": q.step, "team": q.team, "assignee": q.rep}
    return [columns[name] == value for name, value in wanted.items() if value is not None]


def fact_conditions(
    resolved: Resolved, *, period: bool = True, table: Table = FACTS
) -> list[ColumnElement[bool]]:
    """WHERE conditions on `step_facts` (or the rollup) for the query's filters and period.

    A fact is in the period when it was opened in it; a rollup row, when its week starts in it.
    """
    q, c = resolved.query, table.c
    where = _filters(q, c)
    if q.version is not None:
        where.append(c.version == q.version)
    if period:
        moment = c.week_start if "week_start" in c else c.opened_at
        where += [moment >= resolved.scope.since, moment < resolved.scope.until]
    where += _visible(q, c.team, c.assignee)
    return where


def open_task_conditions(
    resolved: Resolved, *, period: bool
) -> tuple[Any, list[ColumnElement[bool]]]:
    """The FROM clause and WHERE conditions for the open tasks the query concerns.

    Returns `tasks` (joined to `instances` when filtering by version) and the conditions. A
    task whose fact is already written (closed a moment ago) is left out, so it never counts
    twice.
    """
    q, t = resolved.query, TASKS.c
    source: Any = TASKS
    where = [t.status == "open", *_filters(q, t)]
    if q.version is not None:
        source = TASKS.join(INSTANCES, INSTANCES.c.id == t.instance_id)
        where.append(INSTANCES.c.version == q.version)
    if period:
        where += [t.opened_at >= resolved.scope.since, t.opened_at < resolved.scope.until]
    where += _visible(q, t.team, t.assignee)
    recorded = (
        select(literal(1))
        .select_from(FACTS)
        .where(
            FACTS.c.instance_id == t.instance_id,
            FACTS.c.step == t.step,
            FACTS.c.visit == t.visit,
        )
        .exists()
    )
    where.append(~recorded)
    return source, where


def _visible(q: ReportQuery, team: Any, assignee: Any) -> list[ColumnElement[bool]]:
    if q.visible_teams is None and q.visible_reps is None:
        return []
    allowed: list[ColumnElement[bool]] = []
    if q.visible_teams:
        allowed.append(team.in_(q.visible_teams))
    if q.visible_reps:
        allowed.append(assignee.in_(q.visible_reps))
    return [or_(*allowed)] if allowed else [literal(False)]


# --- grouping -----------------------------------------------------------------------------------


def group_key(by: Grouping | None, table: Table, resolved: Resolved) -> ColumnElement[Any] | None:
    """The GROUP BY expression for `by` on `step_facts` or `tasks` (None: no grouping).

    Weeks come out as the index of the week in `resolved.weeks` (see `week_index`), or from
    the rollup as the week's start (`Resolved.week_of` turns either into the index).
    """
    c = table.c
    if by is None:
        return None
    if by == "rep":
        return c.assignee
    if by == "team":
        return c.team
    if by == "step":
        return c.step
    if "week_start" in c:  # a rollup
        return c.week_start
    return week_index(c.opened_at, [week.starts_at for week in resolved.weeks])


def key_label(by: Grouping | None, value: Any, resolved: Resolved) -> str | None:
    """A group key as the report shows it: a week index becomes its label (`2026-W47`)."""
    if by == "week" and value is not None:
        index = resolved.week_of(value)
        return resolved.weeks[index].label if index is not None else None
    return None if value is None else str(value)


def period_only(where: list[ColumnElement[bool]]) -> ColumnElement[bool]:
    """All conditions joined with AND (true when there are none)."""
    return and_(*where) if where else literal(True)
