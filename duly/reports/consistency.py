"""Consistency: who meets the goal every week, who only sometimes, and how teams spread.

One GROUP BY (team, rep, week) over the measured visits (`attainment.attainment_counts`);
everything else is arithmetic over those few rows.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from datetime import datetime

from sqlalchemy.orm import Session

from duly.language.loader import Definitions
from duly.reports.attainment import Counts, attainment_counts
from duly.reports.filters import resolve
from duly.reports.models import (
    ConsistencyReport,
    RepConsistency,
    ReportQuery,
    TeamSpread,
    Trend,
    WeekAttainment,
)

TREND_POINTS = 2.0
"""A slope beyond this many attainment points a week is a trend; within it, steady."""


def consistency(
    session: Session,
    query: ReportQuery,
    *,
    definitions: Definitions | None = None,
    now: datetime | None = None,
) -> ConsistencyReport:
    """How consistently each rep meets the goal, and how each team's reps spread.

    Per rep: the weeks meeting the goal of the weeks active, and the trend; per team: the
    spread of its reps' attainment (min, max, population standard deviation).

    A rep is active in a week when at least one of their visits with an SLA was measured in it
    (opened in the week: met, breached, or open past due). A week meets the goal when its
    attainment is at least the goal. `query.by` does not apply: the rows are reps and teams.

    Args:
        session: A database session (SQLite or PostgreSQL).
        query: Filters and period.
        definitions: The loaded definitions, for the goal and the calendar's time zone.
        now: The moment "open past due" is judged at, and the end of the default period.

    Raises:
        ReportError: The query names an unknown process.
    """
    resolved = resolve(session, query, definitions, now)
    goal = resolved.scope.goal
    counts = attainment_counts(session, resolved, ("team", "rep", "week"), rungs=False)
    rep_weeks: dict[str, dict[int, Counts]] = defaultdict(lambda: defaultdict(Counts))
    team_reps: dict[str, dict[str, Counts]] = defaultdict(lambda: defaultdict(Counts))
    rep_teams: dict[str, dict[str | None, int]] = defaultdict(lambda: defaultdict(int))
    for (team, rep, week), group in counts.items():
        if rep is None or week is None:
            continue  # an unassigned visit has no rep to be consistent
        rep_weeks[rep][int(week)].add(group)
        measured = group.met + group.breached + group.open_overdue
        rep_teams[rep][team] += measured
        if team is not None:
            team_reps[team][rep].add(group)
    reps = []
    for rep in sorted(rep_weeks):
        weeks = []
        points = []
        overall = Counts()
        for index in sorted(rep_weeks[rep]):
            row = rep_weeks[rep][index].row(resolved.weeks[index].label, goal)
            overall.add(rep_weeks[rep][index])
            if row.attainment is None:
                continue
            weeks.append(
                WeekAttainment(
                    week=row.key or "",
                    met=row.met,
                    breached=row.breached,
                    attainment=row.attainment,
                    meets_goal=row.meets_goal,
                )
            )
            points.append((index, row.attainment))
        slope = _slope(points)
        mine = rep_teams[rep]
        reps.append(
            RepConsistency(
                rep=rep,
                team=max(mine, key=lambda t: (mine[t], t or "")) if mine else None,
                weeks_active=len(weeks),
                weeks_met=None if goal is None else sum(1 for w in weeks if w.meets_goal),
                attainment=overall.row(None, goal).attainment,
                slope_per_week=slope,
                trend=_trend(slope),
                weeks=weeks,
            )
        )
    teams: list[TeamSpread] = []
    for team in sorted(team_reps):
        total = Counts()
        values = []
        for group in team_reps[team].values():
            total.add(group)
            attained = group.row(None, goal).attainment
            if attained is not None:
                values.append(attained)
        teams.append(
            TeamSpread(
                team=team,
                reps=len(values),
                min=min(values) if values else None,
                max=max(values) if values else None,
                stdev=statistics.pstdev(values) if values else None,
                attainment=total.row(None, goal).attainment,
            )
        )
    return ConsistencyReport(scope=resolved.scope, reps=reps, teams=teams)


def _slope(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of attainment in points (percent) per week; None under two weeks."""
    if len(points) < 2:
        return None
    xs = [float(x) for x, _ in points]
    ys = [y * 100 for _, y in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def _trend(slope: float | None) -> Trend:
    if slope is None:
        return "unknown"
    if slope > TREND_POINTS:
        return "improving"
    if slope < -TREND_POINTS:
        return "slipping"
    return "steady"
