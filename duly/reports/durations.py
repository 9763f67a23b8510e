"""Time to complete tasks in business time: count, mean, p50 and p90 (nearest rank).

Percentiles are exact. With the weekly histogram (`step_fact_week_durations`, when the period
is whole weeks of one process), and on SQLite otherwise, they are found in two steps, neither
of which brings the fact table into Python:

1. The database counts the narrowed task visits per group and per *bucket* of business seconds
   (minutes up to 2 hours, quarter hours up to 2 days, hours beyond; every bucket holds a range
   of values, and buckets are in value order). From those counts, Python finds the bucket each
   percentile's rank falls in, and the rank within it.
2. The database returns only the values in those buckets, which Python sorts to pick the one
   at that rank.

Otherwise, PostgreSQL computes them itself (`percentile_disc ... WITHIN GROUP`, with GROUPING
SETS for the overall row) in one pass.

The percentile is the nearest-rank one: the smallest value with at least p of the values at or
below it (PostgreSQL's `percentile_disc`), so it is always a duration some task really took.
"""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Float, String, cast, func, literal, or_, select
from sqlalchemy import tuple_ as sql_tuple
from sqlalchemy.orm import Session

from duly.language.loader import Definitions
from duly.reports.filters import FACTS, Resolved, fact_conditions, group_key, key_label, resolve
from duly.reports.models import DurationReport, DurationRow, Grouping, ReportQuery
from duly.store.rollup import DURATIONS, bucket_of

PERCENTILES = (0.5, 0.9)
_NONE = ""  # stands for a NULL group key (an unassigned visit), which IN cannot match


def rank_of(fraction: float, count: int) -> int:
    """The 1-based nearest rank of a percentile among `count` values."""
    return max(1, math.ceil(round(fraction * count, 9)))


def _key(by: Grouping | None, resolved: Resolved) -> ColumnElement[Any] | None:
    key = group_key(by, FACTS, resolved)
    if key is None or by == "week":
        return key
    return func.coalesce(cast(key, String), literal(_NONE))


_ALL = object()  # the overall group, beside the groups of `by`


def duration_stats(
    session: Session, resolved: Resolved, by: Grouping | None
) -> tuple[DurationRow, dict[Any, DurationRow]]:
    """Count, mean and percentiles of task business seconds, overall and per group.

    Both come from the same two passes (the overall histogram is the sum of the groups').

    Returns:
        The overall row, and rows per raw group key (empty when `by` is None).
    """
    c = FACTS.c
    seconds = cast(c.business_seconds, Float)
    bucket = bucket_of(seconds).label("bucket")
    key = _key(by, resolved)
    keys = [key.label("k")] if key is not None else []
    where = [*fact_conditions(resolved), c.kind == "task", c.business_seconds.is_not(None)]
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres and resolved.facts is FACTS:
        return _ordered_set(session, key, seconds, where)
    if resolved.facts is not FACTS:
        histogram = _rollup_histogram(resolved, by)
    else:
        histogram = (
            select(*keys, bucket, func.count().label("n"), func.sum(seconds).label("total"))
            .where(*where)
            .group_by(*keys, bucket)
        )
    buckets: dict[Any, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    sums: dict[Any, float] = defaultdict(float)
    for row in session.execute(histogram):
        values = tuple(row)
        number, n, total = int(values[-3]), int(values[-2]), float(values[-1] or 0.0)
        group = resolved.week_of(values[0]) if by == "week" and keys else values[0]
        groups = (group, _ALL) if keys else (_ALL,)
        for group in groups:
            buckets[group][number] += n
            sums[group] += total
    # Where each percentile's rank falls: (group, bucket) -> (fraction, rank within the bucket)
    wanted: dict[tuple[Any, int], list[tuple[float, int]]] = defaultdict(list)
    counts: dict[Any, int] = {}
    for group, histo in buckets.items():
        counts[group] = total_n = sum(histo.values())
        for fraction in PERCENTILES:
            rank, seen = rank_of(fraction, total_n), 0
            for number in sorted(histo):
                if seen + histo[number] >= rank:
                    wanted[(group, number)].append((fraction, rank - seen))
                    break
                seen += histo[number]
    found: dict[tuple[Any, float], float] = {}
    if wanted:
        overall = sorted({b for g, b in wanted if g is _ALL})
        pairs = [(g, b) for g, b in wanted if g is not _ALL]
        tests = [bucket_of(seconds).in_(overall)]
        if postgres and key is not None and pairs:
            # PostgreSQL hashes a long IN list of constants but tries row values one by one:
            # match "<group>#<bucket>" strings instead
            label = cast(key, String) + literal("#") + cast(bucket_of(seconds), String)
            tests.append(label.in_(sorted({f"{g}#{b}" for g, b in pairs})))
        elif key is not None and pairs:
            tests.append(sql_tuple(key, bucket_of(seconds)).in_(pairs))
        narrowed = select(*keys, bucket, seconds.label("s")).where(*where, or_(*tests))
        values_in: dict[tuple[Any, int], list[float]] = defaultdict(list)
        for row in session.execute(narrowed):
            values = tuple(row)
            number, value = int(values[-2]), float(values[-1])
            for group in (values[0], _ALL) if keys else (_ALL,):
                if (group, number) in wanted:
                    values_in[(group, number)].append(value)
        for pair, targets in wanted.items():
            ordered = sorted(values_in[pair])
            for fraction, position in targets:
                found[(pair[0], fraction)] = ordered[position - 1]
    rows = {
        group: DurationRow(
            key=None,
            count=count,
            mean_seconds=sums[group] / count,
            p50_seconds=found.get((group, 0.5)),
            p90_seconds=found.get((group, 0.9)),
        )
        for group, count in counts.items()
    }
    return rows.pop(_ALL, DurationRow(key=None)), rows


def _rollup_histogram(resolved: Resolved, by: Grouping | None) -> Any:
    """The histogram from `step_fact_week_durations`, keyed like the fact-table query."""
    d = DURATIONS.c
    raw = group_key(by, DURATIONS, resolved)
    key: Any = raw if raw is None or by == "week" else func.coalesce(raw, literal(_NONE))
    keys = [key.label("k")] if key is not None else []
    return (
        select(*keys, d.bucket, func.sum(d.visits).label("n"), func.sum(d.seconds_sum))
        .where(*fact_conditions(resolved, table=DURATIONS))
        .group_by(*keys, d.bucket)
    )


def _ordered_set(
    session: Session, key: Any, seconds: Any, where: list[Any]
) -> tuple[DurationRow, dict[Any, DurationRow]]:
    """PostgreSQL's way, in one pass: `percentile_disc` per group and overall.

    `percentile_disc` is the nearest rank too, so both databases give the same values.
    """
    columns = [
        func.count().label("n"),
        func.sum(seconds).label("total"),
        *(func.percentile_disc(p).within_group(seconds).label(f"p{p}") for p in PERCENTILES),
    ]
    if key is None:
        statement = select(literal(1).label("overall"), *columns).where(*where)
    else:
        statement = (
            select(func.grouping(key).label("overall"), key.label("k"), *columns)
            .where(*where)
            .group_by(func.grouping_sets(sql_tuple(key), sql_tuple()))
        )
    overall, rows = DurationRow(key=None), {}
    for row in session.execute(statement).mappings():
        if not row["n"]:
            continue
        stats = DurationRow(
            key=None,
            count=int(row["n"]),
            mean_seconds=float(row["total"]) / int(row["n"]),
            p50_seconds=float(row["p0.5"]),
            p90_seconds=float(row["p0.9"]),
        )
        if row["overall"]:
            overall = stats
        else:
            rows[row["k"]] = stats
    return overall, rows


def durations(
    session: Session,
    query: ReportQuery,
    *,
    definitions: Definitions | None = None,
    now: datetime | None = None,
) -> DurationReport:
    """Business time taken to complete tasks (kind `task`), per `query.by` and overall.

    Business seconds are those the process calendar is open (holidays and nights excluded), as
    the engine recorded them when the visit closed. Percentiles are nearest-rank (see module).

    Args:
        session: A database session (SQLite or PostgreSQL).
        query: Filters, period and grouping.
        definitions: The loaded definitions, for the calendar's time zone (weeks).
        now: The end of the default period (default: now).

    Raises:
        ReportError: The query names an unknown process.
    """
    resolved = resolve(session, query, definitions, now)
    overall, stats = duration_stats(session, resolved, query.by)
    rows: list[DurationRow] = []
    if query.by is not None:
        for group in sorted(stats, key=lambda g: (g is None or g == _NONE, g or 0)):
            raw = None if group == _NONE else group
            rows.append(stats[group].model_copy(update={"key": key_label(query.by, raw, resolved)}))
    return DurationReport(scope=resolved.scope, total=overall, rows=rows)
