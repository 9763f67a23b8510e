"""Every report pinned against the hand-worked history in conftest.py, on both databases."""

from __future__ import annotations

import statistics
from datetime import UTC, datetime, timedelta

import pytest

from duly.language import business_time
from duly.language.loader import Definitions
from duly.reports import (
    ReportError,
    ReportQuery,
    attainment,
    backlog,
    consistency,
    durations,
    funnel,
    outcome_mix,
    to_csv,
)
from duly.store.db import SessionFactory

from .conftest import LABELS, NOW, PROCESS, WEEK_A, WEEK_C, History

QUOTES = ReportQuery(process=PROCESS, weeks=3)
pytestmark = pytest.mark.usefixtures("paths")


def query(**changes: object) -> ReportQuery:
    return QUOTES.model_copy(update=changes)


def test_weeks_are_new_york_iso_weeks(worked: SessionFactory, definitions: Definitions) -> None:
    with worked() as session:
        report = attainment(session, query(by="week"), definitions=definitions, now=NOW)
    scope = report.scope
    assert scope.timezone == "America/New_York"
    assert [w.label for w in scope.weeks] == list(LABELS)
    assert scope.since == WEEK_A and scope.until == WEEK_C + timedelta(weeks=1)
    assert scope.goal == pytest.approx(0.95)


def test_attainment_by_rep(worked: SessionFactory, definitions: Definitions) -> None:
    with worked() as session:
        report = attainment(session, query(by="rep"), definitions=definitions, now=NOW)
    rows = {row.key: row for row in report.rows}
    assert list(rows) == ["ana", "ben", "chloe"]
    ana, ben, chloe = rows["ana"], rows["ben"], rows["chloe"]
    # Ana: met again; breached is open past its due time
    assert (ana.met, ana.breached, ana.open_overdue, ana.measured) == (3, 2, 1, 5)
    assert ana.attainment == pytest.approx(0.6) and ana.meets_goal is False
    assert (ana.escalated, ana.rungs) == (1, {2: 1})
    assert (ben.met, ben.breached, ben.open_overdue) == (1, 2, 0)
    assert ben.attainment == pytest.approx(1 / 3)
    assert (ben.escalated, ben.rungs) == (3, {1: 1, 2: 1, 3: 1})
    assert (chloe.met, chloe.breached, chloe.attainment, chloe.meets_goal) == (1, 0, 1.0, True)
    total = report.total
    assert (total.met, total.breached, total.open_overdue) == (5, 4, 1)
    assert total.attainment == pytest.approx(5 / 9)
    assert total.rungs == {1: 1, 2: 2, 3: 1}


def test_attainment_by_week_in_the_calendar_zone(
    worked: SessionFactory, definitions: Definitions
) -> None:
    """Q-4 opened Monday 03:00 UTC, still Sunday in New York: it counts in week A."""
    with worked() as session:
        report = attainment(session, query(by="week"), definitions=definitions, now=NOW)
    weeks = {row.key: (row.met, row.breached) for row in report.rows}
    assert weeks == {LABELS[0]: (3, 1), LABELS[1]: (2, 1), LABELS[2]: (0, 2)}


def test_attainment_filters(worked: SessionFactory, definitions: Definitions) -> None:
    with worked() as session:
        ben = attainment(session, query(rep="ben"), definitions=definitions, now=NOW)
        support = attainment(
            session, ReportQuery(process="support-case", weeks=3), definitions=definitions, now=NOW
        )
        since = attainment(
            session,
            ReportQuery(process=PROCESS, since=WEEK_C, until=NOW),
            definitions=definitions,
            now=NOW,
        )
        other_team = attainment(session, query(team="support"), definitions=definitions, now=NOW)
        v2 = attainment(session, query(version=2), definitions=definitions, now=NOW)
    assert (ben.total.met, ben.total.breached) == (1, 2)
    assert (support.total.met, support.total.breached) == (1, 0)
    assert (since.total.met, since.total.breached, since.total.open_overdue) == (0, 2, 1)
    assert other_team.total.measured == 0
    assert v2.total.measured == 0 and v2.total.attainment is None


def test_open_overdue_is_judged_at_now(worked: SessionFactory, definitions: Definitions) -> None:
    """Before Q-8's due time it is not breached; after Q-9's, both are."""
    with worked() as session:
        early = attainment(
            session, query(), definitions=definitions, now=WEEK_C + timedelta(hours=20)
        )
        late = attainment(session, query(), definitions=definitions, now=NOW + timedelta(days=3))
    assert early.total.open_overdue == 0
    assert late.total.open_overdue == 2


def test_durations_nearest_rank(worked: SessionFactory, definitions: Definitions) -> None:
    with worked() as session:
        report = durations(session, query(by="rep"), definitions=definitions, now=NOW)
    rows = {row.key: row for row in report.rows}
    # Ana: 600, 3600, 7200, 90000: p50 is the 2nd, p90 the 4th
    assert (rows["ana"].count, rows["ana"].p50_seconds, rows["ana"].p90_seconds) == (
        4,
        3600,
        90000,
    )
    assert rows["ana"].mean_seconds == pytest.approx(101400 / 4)
    # Ben: 1800, 200000, 300000
    assert (rows["ben"].p50_seconds, rows["ben"].p90_seconds) == (200_000, 300_000)
    assert (rows["chloe"].count, rows["chloe"].p50_seconds, rows["chloe"].p90_seconds) == (
        1,
        900,
        900,
    )
    # All eight: 600 900 1800 3600 | 7200 90000 200000 300000
    total = report.total
    assert (total.count, total.p50_seconds, total.p90_seconds) == (8, 3600, 300_000)


def test_durations_pick_within_a_crowded_bucket(
    history: History, sessions: SessionFactory, definitions: Definitions
) -> None:
    """Values sharing one histogram bucket (a minute) still give the exact nearest rank."""
    for i, seconds in enumerate([60.5, 61.0, 62.0, 63.0, 119.0, 7300.0, 7301.0]):
        history.fact(f"D-{i}", WEEK_C + timedelta(hours=i), met=True, rung=0, seconds=seconds)
    with sessions() as session:
        report = durations(session, query(by="week"), definitions=definitions, now=NOW)
    # 7 values: p50 rank 4 (63.0), p90 rank ceil(6.3) = 7 (7301.0)
    assert (report.total.p50_seconds, report.total.p90_seconds) == (63.0, 7301.0)
    assert [(r.key, r.count) for r in report.rows] == [(LABELS[2], 7)]


def test_business_time_across_a_holiday(
    history: History, sessions: SessionFactory, definitions: Definitions
) -> None:
    """A call opened Wednesday 16:00 before Thanksgiving and made Friday 10:00 took two business
    hours (the holiday and the nights do not count), not 42 wall-clock hours."""
    calendar = definitions.processes[PROCESS].calendar
    opened = datetime.fromisoformat("2026-11-25T16:00:00-05:00")
    closed = datetime.fromisoformat("2026-11-27T10:00:00-05:00")
    seconds = business_time.elapsed(calendar, opened, closed).total_seconds()
    assert seconds == 7200
    history.fact("H-1", opened, rep="chloe", met=True, rung=0, seconds=seconds)
    with sessions() as session:
        report = durations(
            session,
            query(rep="chloe"),
            definitions=definitions,
            now=closed + timedelta(hours=1),
        )
    assert (report.total.count, report.total.p50_seconds, report.total.p90_seconds) == (
        1,
        7200,
        7200,
    )


def test_outcome_mix(worked: SessionFactory, definitions: Definitions) -> None:
    with worked() as session:
        report = outcome_mix(session, query(), definitions=definitions, now=NOW)
        by_rep = outcome_mix(session, query(by="rep"), definitions=definitions, now=NOW)
    (calls,) = report.rows
    assert (calls.step, calls.visits) == ("call-customer", 8)
    assert [(o.outcome, o.count, o.share) for o in calls.outcomes] == [
        ("reached", 4, 0.5),
        ("lost", 2, 0.25),
        ("voicemail", 2, 0.25),
    ]
    ben = next(row for row in by_rep.rows if row.key == "ben")
    assert {o.outcome: o.count for o in ben.outcomes} == {"reached": 1, "lost": 1, "voicemail": 1}


def test_funnel_counts_the_instances_that_started_in_the_period(
    worked: SessionFactory, definitions: Definitions
) -> None:
    with worked() as session:
        report = funnel(session, query(), definitions=definitions, now=NOW)
    # Q-1..Q-9 started in the period (Q-0 before it); are still at their task
    assert report.started == 9
    assert [(s.step, s.instances, s.visits, s.open) for s in report.steps] == [
        ("call-customer", 9, 10, 2),
        ("send-summary", 4, 4, 0),
        ("lost", 2, 2, 0),
        ("won", 4, 4, 0),
    ]
    assert [s.share for s in report.steps] == pytest.approx([1, 4 / 9, 2 / 9, 4 / 9])


def test_backlog_now(worked: SessionFactory, definitions: Definitions) -> None:
    with worked() as session:
        report = backlog(session, query(by="rep"), definitions=definitions, now=NOW)
        nobody = backlog(session, query(rep="ben"), definitions=definitions, now=NOW)
    (ana,) = report.rows
    assert (ana.key, ana.open, ana.overdue) == ("ana", 2, 1)
    assert ana.oldest_opened_at == WEEK_C + timedelta(hours=14)
    assert (report.total.open, report.total.overdue) == (2, 1)
    assert (nobody.total.open, nobody.rows) == (0, [])


def test_consistency(worked: SessionFactory, definitions: Definitions) -> None:
    with worked() as session:
        report = consistency(session, query(), definitions=definitions, now=NOW)
    reps = {r.rep: r for r in report.reps}
    ana, ben, chloe = reps["ana"], reps["ben"], reps["chloe"]
    # Ana: A 2/2, B 1/1, C 0/2 (Q-7 and the overdue Q-8): two weeks of three at 95%
    assert [(w.week, w.attainment, w.meets_goal) for w in ana.weeks] == [
        (LABELS[0], 1.0, True),
        (LABELS[1], 1.0, True),
        (LABELS[2], 0.0, False),
    ]
    assert (ana.weeks_active, ana.weeks_met, ana.team) == (3, 2, "inbound-sales")
    assert ana.attainment == pytest.approx(0.6)
    assert ana.slope_per_week == pytest.approx(-50) and ana.trend == "slipping"
    assert (ben.weeks_active, ben.weeks_met) == (2, 0)
    assert [w.attainment for w in ben.weeks] == [0.5, 0.0]
    # Chloe was active one week: no trend yet
    assert (chloe.weeks_active, chloe.weeks_met, chloe.trend, chloe.slope_per_week) == (
        1,
        1,
        "unknown",
        None,
    )
    (team,) = report.teams
    assert (team.team, team.reps) == ("inbound-sales", 3)
    assert (team.min, team.max) == (pytest.approx(1 / 3), 1.0)
    assert team.stdev == pytest.approx(statistics.pstdev([0.6, 1 / 3, 1.0]))
    assert team.stdev == pytest.approx(0.27397, abs=1e-5)
    assert team.attainment == pytest.approx(5 / 9)


def test_a_steady_and_an_improving_rep(
    history: History, sessions: SessionFactory, definitions: Definitions
) -> None:
    week = timedelta(weeks=1)
    for i, start in enumerate((WEEK_A, WEEK_A + week, WEEK_C)):
        history.fact(f"S-{i}", start + timedelta(hours=14), met=True, rung=0, seconds=60)
        history.fact(f"I-{i}", start + timedelta(hours=14), rep="ben", met=True, rung=0)
        if i == 0:
            history.fact("I-x", start + timedelta(hours=15), rep="ben", met=False, rung=1)
    with sessions() as session:
        report = consistency(session, query(), definitions=definitions, now=NOW)
    reps = {r.rep: r for r in report.reps}
    assert (reps["ana"].trend, reps["ana"].weeks_met, reps["ana"].weeks_active) == (
        "steady",
        3,
        3,
    )
    assert reps["ben"].trend == "improving"
    assert reps["ben"].slope_per_week == pytest.approx(25)  # 50, 100, 100


def test_no_data(sessions: SessionFactory, definitions: Definitions) -> None:
    with sessions() as session:
        kept = attainment(session, query(by="rep"), definitions=definitions, now=NOW)
        took = durations(session, query(by="rep"), definitions=definitions, now=NOW)
        mix = outcome_mix(session, query(), definitions=definitions, now=NOW)
        steps = funnel(session, query(), definitions=definitions, now=NOW)
        open_now = backlog(session, query(), definitions=definitions, now=NOW)
        spread = consistency(session, query(), definitions=definitions, now=NOW)
    assert kept.rows == [] and kept.total.measured == 0 and kept.total.attainment is None
    assert kept.total.meets_goal is None
    assert took.rows == [] and took.total.count == 0 and took.total.p50_seconds is None
    assert mix.rows == [] and steps.steps == []
    assert (open_now.total.open, open_now.total.overdue) == (0, 0)
    assert spread.reps == [] and spread.teams == []
    assert to_csv(kept).splitlines() == [
        "rep,met,breached,open_overdue,measured,attainment,goal,meets_goal,escalated",
        "all,0,0,0,0,,0.95,,0",
    ]


def test_visibility_narrows_every_figure(worked: SessionFactory, definitions: Definitions) -> None:
    with worked() as session:
        mine = attainment(
            session,
            query(by="rep", visible_reps=("ben",), visible_teams=()),
            definitions=definitions,
            now=NOW,
        )
        team = backlog(session, query(visible_teams=("support",)), definitions=definitions, now=NOW)
    assert [row.key for row in mine.rows] == ["ben"]
    assert team.total.open == 0


def test_bad_queries_say_what_is_wrong(sessions: SessionFactory) -> None:
    with sessions() as session, pytest.raises(ReportError, match="no process 'nope'"):
        attainment(session, ReportQuery(process="nope"), definitions=Definitions(), now=NOW)
    with sessions() as session, pytest.raises(ReportError, match="more than 520 weeks"):
        attainment(session, ReportQuery(since=datetime(2000, 1, 3, tzinfo=UTC), until=NOW), now=NOW)
    with sessions() as session, pytest.raises(ReportError, match="must lie between 1970"):
        attainment(session, ReportQuery(since=datetime(1, 1, 1, 3, tzinfo=UTC), until=NOW), now=NOW)
    with pytest.raises(ValueError, match="either weeks or since/until"):
        ReportQuery(weeks=2, since=NOW)
    with pytest.raises(ValueError, match="needs a time zone"):
        ReportQuery(since=datetime(2026, 11, 1))
