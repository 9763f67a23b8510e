"""The weekly rollup of the fact table (`step_fact_weeks`), kept as facts are written.

`record_step` calls `add_fact` in the transaction that inserts a new fact, so the rollup and
the facts commit together, and a retried activity (whose fact already exists) adds nothing.
`rebuild` recomputes the rollup from the facts (for a database whose facts predate it, and
for benchmarks that bulk-load facts).

A visit counts in the week (Monday 00:00, ISO) of its opening in its process calendar's time
zone, the same weeks the reports use for a process; reports read the rollup when the period
is whole weeks of that grid, and the fact table otherwise.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Integer, Table, case, cast, delete, func, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from duly.store.models import Definition, StepFact, StepFactWeek

WEEKS: Table = StepFactWeek.__table__  # type: ignore[attr-defined]
FACTS: Table = StepFact.__table__  # type: ignore[attr-defined]
COUNTS = ("visits", "first_visits", "seconds_count", "seconds_sum")


def week_start(moment: datetime, zone: tzinfo) -> datetime:
    """Monday 00:00 of the ISO week `moment` falls in, in `zone`, as a UTC instant."""
    local = moment.astimezone(zone).date()
    monday = local - timedelta(days=local.weekday())
    return datetime(monday.year, monday.month, monday.day, tzinfo=zone).astimezone(UTC)


def rollup_key(dims: dict[str, Any]) -> str:
    """The rollup row's unique key: its dimensions as JSON (NULLs compare equal there)."""
    values = {name: dims[name] for name in DIMENSIONS}
    values["week_start"] = dims["week_start"].astimezone(UTC).isoformat()
    return json.dumps(values, sort_keys=True, separators=(",", ":"))


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


def _upsert(session: Session, rows: list[dict[str, Any]]) -> None:
    """Add `rows`' counts to their rollup rows, creating those missing (one statement)."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    module: Any = postgresql if dialect == "postgresql" else sqlite
    statement = module.insert(WEEKS).values(rows)
    statement = statement.on_conflict_do_update(
        index_elements=[WEEKS.c.key],
        set_={name: WEEKS.c[name] + statement.excluded[name] for name in COUNTS},
    )
    session.execute(statement)


def add_fact(session: Session, fact: StepFact, zone: tzinfo) -> None:
    """Count a newly inserted fact in its week's rollup row, in the caller's transaction.

    Call it only when the fact was inserted (not when a retry found it), so it counts once.

    Args:
        session: The session whose transaction inserted the fact.
        fact: The fact.
        zone: The process calendar's time zone (its weeks).
    """
    dims: dict[str, Any] = {
        name: getattr(fact, name) for name in DIMENSIONS if name != "week_start"
    }
    dims["week_start"] = week_start(fact.opened_at, zone)
    timed = fact.business_seconds is not None
    _upsert(
        session,
        [
            {
                **dims,
                "key": rollup_key(dims),
                "visits": 1,
                "first_visits": 1 if fact.visit == 1 else 0,
                "seconds_count": 1 if timed else 0,
                "seconds_sum": float(fact.business_seconds or 0.0) if timed else 0.0,
            }
        ],
    )


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
    """Recompute the whole rollup from the fact table, in the caller's transaction.

    The database groups the facts by their dimensions and the UTC hour they were opened in;
    Python moves each hour's counts into its week of the process calendar. Exact for every
    zone whose offset from UTC is whole hours (a half-hour zone could misplace the half hour
    around Monday midnight).

    Args:
        session: A session in a transaction that writes.
        zones: (process, version) -> calendar zone; read from the stored definitions if None.

    Returns:
        The number of rollup rows written.
    """
    zones = zones if zones is not None else zones_of(session)
    session.execute(delete(WEEKS))
    c = FACTS.c
    if session.get_bind().dialect.name == "postgresql":
        hour: Any = func.floor(func.extract("epoch", c.opened_at) / 3600)
    else:
        hour = cast(func.strftime("%s", c.opened_at), Integer) // 3600
    dims = [c[name] for name in DIMENSIONS if name != "week_start"]
    grouped = select(
        *dims,
        hour.label("hour"),
        func.count().label("visits"),
        func.sum(case((c.visit == 1, 1), else_=0)).label("first_visits"),
        func.count(c.business_seconds).label("seconds_count"),
        func.coalesce(func.sum(c.business_seconds), 0.0).label("seconds_sum"),
    ).group_by(*dims, hour)
    rows: dict[str, dict[str, Any]] = {}
    for row in session.execute(grouped).mappings():
        values = dict(row)
        opened = datetime.fromtimestamp(int(values.pop("hour")) * 3600, UTC)
        zone = zones.get((values["process"], values["version"]), UTC)
        values["week_start"] = week_start(opened, zone)
        key = rollup_key(values)
        if key not in rows:
            rows[key] = {name: values[name] for name in DIMENSIONS} | {"key": key}
            rows[key].update(dict.fromkeys(COUNTS, 0))
        for name in COUNTS:
            rows[key][name] += values[name] or 0
    payload = list(rows.values())
    for first in range(0, len(payload), 1000):
        session.execute(insert(WEEKS), payload[first : first + 1000])
    return len(payload)
