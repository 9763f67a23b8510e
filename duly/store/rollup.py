"""The weekly rollups of the fact table, kept as facts are written.

- `step_fact_weeks` (`StepFactWeek`): visits counted per process, version, step, kind, team,
  assignee, week, outcome, SLA met and highest rung: attainment, outcomes, funnel and
  consistency read it.
- `step_fact_week_durations` (`StepFactWeekDuration`): a histogram of the task visits'
  business seconds per process, version, step, team, assignee, week and bucket: percentiles
  find the bucket holding their rank there, then read only that bucket's facts.

`record_step` calls `add_fact` in the transaction that inserts a new fact, so the rollups and
the facts commit together, and a retried activity (whose fact already exists) adds nothing.
`rebuild` recomputes both from the facts (for facts that predate the rollups, and for
benchmarks that bulk-load facts).

A visit counts in the week (ISO, from Monday 00:00) of its opening in its process calendar's
time zone, the weeks the reports use for a process; reports read the rollups when the period
is whole weeks of that grid, and the fact table otherwise.

The rollups are the store's: the engine's activities keep them as they write facts, and
`duly.reports` only reads them (with `week_index` and `bucket_of`, the same grid in SQL).
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import (
    ColumnElement,
    Integer,
    Table,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from duly.store.models import Definition, StepFact, StepFactWeek, StepFactWeekDuration

WEEKS: Table = StepFactWeek.__table__  # type: ignore[attr-defined]
DURATIONS: Table = StepFactWeekDuration.__table__  # type: ignore[attr-defined]
FACTS: Table = StepFact.__table__  # type: ignore[attr-defined]
DIMENSIONS = (
    "process",
    "version",
    "step",
    "kind",
    "team",
    "assignee",
    "week_start",
    "outcome",
    "sla_met",
    "highest_rung",
)
DURATION_DIMENSIONS = ("process", "version", "step", "team", "assignee", "week_start", "bucket")
COUNTS = ("visits", "first_visits", "seconds_count", "seconds_sum")
DURATION_COUNTS = ("visits", "seconds_sum")


def bucket_number(seconds: float) -> int:
    """The histogram bucket of a duration: minutes to 2 h, quarter hours to 2 days, then hours.

    The same numbers as `bucket_of` computes in SQL (for seconds from 0 up: SQLite's integer
    cast truncates, which is the floor there).
    """
    if seconds < 7200:
        return int(seconds // 60)
    if seconds < 172_800:
        return 120 + int((seconds - 7200) // 900)
    return 304 + int((seconds - 172_800) // 3600)


class floor_int(FunctionElement[int]):  # noqa: N801 (an SQL function's name)
    """The floor of a non-negative number as an integer, on every database."""

    type = Integer()
    inherit_cache = True


@compiles(floor_int)
def _floor_int(element: floor_int, compiler: Any, **kw: Any) -> str:
    return f"CAST(FLOOR({compiler.process(element.clauses, **kw)}) AS INTEGER)"


@compiles(floor_int, "sqlite")
def _floor_int_sqlite(element: floor_int, compiler: Any, **kw: Any) -> str:
    # SQLite's FLOOR needs its optional math functions; its cast truncates, the same from 0 up
    return f"CAST({compiler.process(element.clauses, **kw)} AS INTEGER)"


def bucket_of(seconds: Any) -> ColumnElement[int]:
    """The histogram bucket of a business-seconds value, as SQL: monotone in the value.

    The same numbers as `bucket_number` computes in Python.
    """
    return case(
        (seconds < 7200, floor_int(seconds / 60)),
        (seconds < 172_800, 120 + floor_int((seconds - 7200) / 900)),
        else_=304 + floor_int((seconds - 172_800) / 3600),
    )


def week_index(column: Any, starts: list[datetime]) -> ColumnElement[int]:
    """Which of consecutive weeks (their UTC starts, oldest first) a moment falls in, as SQL.

    0 is the oldest; NULL before it (the newest week is open-ended: callers bound the period).
    A CASE over the UTC instants, newest first: the same answer on every database, with
    daylight saving time already in the instants.
    """
    if not starts:
        return literal(None)
    whens = [(column >= start, index) for index, start in reversed(list(enumerate(starts)))]
    return case(*whens, else_=None)


def week_start(moment: datetime, zone: tzinfo) -> datetime:
    """Monday 00:00 of the ISO week `moment` falls in, in `zone`, as a UTC instant."""
    local = moment.astimezone(zone).date()
    monday = local - timedelta(days=local.weekday())
    return datetime(monday.year, monday.month, monday.day, tzinfo=zone).astimezone(UTC)


def rollup_key(dims: dict[str, Any], names: tuple[str, ...] = DIMENSIONS) -> str:
    """A rollup row's unique key: its dimensions as JSON (NULLs compare equal there)."""
    values = {name: dims[name] for name in names}
    values["week_start"] = dims["week_start"].astimezone(UTC).isoformat()
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


def _upsert(session: Session, table: Table, row: dict[str, Any], counts: tuple[str, ...]) -> None:
    """Add `row`'s counts to its rollup row, creating it when missing (one statement)."""
    # One statement per table, compiled once, with the row as its parameters: a fact's two
    # rows otherwise built and cache-keyed a statement each, in the writers' turn
    session.execute(_add_counts(table, counts, session.get_bind().dialect.name), row)


@functools.lru_cache(maxsize=16)
def _add_counts(table: Table, counts: tuple[str, ...], dialect: str) -> Any:
    """`INSERT ... ON CONFLICT (key) DO UPDATE` adding `counts` to the row already there."""
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(table)
    return statement.on_conflict_do_update(
        index_elements=[table.c.key],
        set_={name: table.c[name] + statement.excluded[name] for name in counts},
    )


def add_fact(session: Session, fact: Mapping[str, Any], zone: tzinfo) -> None:
    """Count a newly inserted fact in its week's rollup rows, in the caller's transaction.

    Call it only when the fact was inserted (not when a retry found it), so it counts once.

    Args:
        session: The session whose transaction inserted the fact.
        fact: The fact's values, by column.
        zone: The process calendar's time zone (its weeks).
    """
    dims: dict[str, Any] = {name: fact[name] for name in DIMENSIONS if name != "week_start"}
    dims["week_start"] = week_start(fact["opened_at"], zone)
    seconds = fact["business_seconds"]
    row = {
        **dims,
        "key": rollup_key(dims),
        "visits": 1,
        "first_visits": 1 if fact["visit"] == 1 else 0,
        "seconds_count": 0 if seconds is None else 1,
        "seconds_sum": float(seconds or 0.0),
    }
    _upsert(session, WEEKS, row, COUNTS)
    if fact["kind"] == "task" and seconds is not None:
        timed = {name: dims[name] for name in DURATION_DIMENSIONS if name != "bucket"}
        timed["bucket"] = bucket_number(float(seconds))
        timed |= {"key": rollup_key(timed, DURATION_DIMENSIONS), "visits": 1}
        _upsert(session, DURATIONS, timed | {"seconds_sum": float(seconds)}, DURATION_COUNTS)


def zones_of(session: Session) -> dict[tuple[str, int], tzinfo]:
    """Each stored (process, version)'s calendar time zone (UTC when unreadable)."""
    zones: dict[tuple[str, int], tzinfo] = {}
    table: Table = Definition.__table__  # type: ignore[attr-defined]
    for process, version, compiled in session.execute(
        select(table.c.process, table.c.version, table.c.compiled_json)
    ):
        try:
            zones[(process, version)] = ZoneInfo(json.loads(compiled)["calendar"]["timezone"])
        except (ValueError, KeyError, TypeError, ZoneInfoNotFoundError):
            zones[(process, version)] = UTC
    return zones


def rebuild(session: Session, zones: dict[tuple[str, int], tzinfo] | None = None) -> int:
    """Recompute both rollups from the fact table, in the caller's transaction.

    For each time zone, the database groups the facts of the processes in it by their
    dimensions and week (a CASE over that zone's week starts, as the reports do): a few
    thousand rows, however many facts.

    Args:
        session: A session in a transaction that writes.
        zones: (process, version) -> calendar zone; read from the stored definitions if None.

    Returns:
        The number of rows written to `step_fact_weeks`.
    """
    zones = zones if zones is not None else zones_of(session)
    session.execute(delete(WEEKS))
    session.execute(delete(DURATIONS))
    c = FACTS.c
    pairs = session.execute(select(c.process, c.version).distinct()).all()
    by_zone: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for process, version in pairs:
        by_zone[str(zones.get((process, version), UTC))].append((process, version))
    written = 0
    for zone_name, members in by_zone.items():
        zone = ZoneInfo(zone_name) if zone_name != "UTC" else UTC
        mine = or_(*(and_(c.process == p, c.version == v) for p, v in members))
        first, last = session.execute(
            select(func.min(c.opened_at), func.max(c.opened_at)).where(mine)
        ).one()
        if first is None:
            continue
        weeks = _weeks(first, last, zone)
        week = week_index(c.opened_at, weeks).label("week")
        dims = [c[name] for name in DIMENSIONS if name != "week_start"]
        grouped = (
            select(
                *dims,
                week,
                func.count().label("visits"),
                func.sum(case((c.visit == 1, 1), else_=0)).label("first_visits"),
                func.count(c.business_seconds).label("seconds_count"),
                func.coalesce(func.sum(c.business_seconds), 0.0).label("seconds_sum"),
            )
            .where(mine)
            .group_by(*dims, week)
        )
        written += _write(session, WEEKS, grouped, weeks, DIMENSIONS)
        bucket = bucket_of(c.business_seconds).label("bucket")
        timed = [c[name] for name in DURATION_DIMENSIONS if name not in ("week_start", "bucket")]
        histogram = (
            select(
                *timed,
                week,
                bucket,
                func.count().label("visits"),
                func.sum(c.business_seconds).label("seconds_sum"),
            )
            .where(mine, c.kind == "task", c.business_seconds.is_not(None))
            .group_by(*timed, week, bucket)
        )
        _write(session, DURATIONS, histogram, weeks, DURATION_DIMENSIONS)
    return written


def _weeks(first: datetime, last: datetime, zone: tzinfo) -> list[datetime]:
    """The UTC starts of the weeks from the one holding `first` to the one holding `last`."""
    start = week_start(first, zone)
    starts = []
    while start <= last:
        starts.append(start)
        start = week_start(start + timedelta(days=8), zone)
    return starts


def _write(
    session: Session, table: Table, grouped: Any, weeks: list[datetime], names: tuple[str, ...]
) -> int:
    rows = []
    for row in session.execute(grouped).mappings():
        values = dict(row)
        values["week_start"] = weeks[int(values.pop("week"))]
        values["key"] = rollup_key(values, names)
        rows.append(values)
    for first in range(0, len(rows), 1000):
        session.execute(insert(table), rows[first : first + 1000])
    return len(rows)
