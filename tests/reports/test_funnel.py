"""The funnel's base and shares ("How duly counts" in docs/language.md), hand-counted, and a
property test over random fact tables: no share above 100%, whatever the scope."""

from __future__ import annotations

import random
from datetime import UTC, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine

from duly.language.loader import Definitions
from duly.reports import FunnelReport, ReportError, ReportQuery, funnel
from duly.store.db import create_all, make_engine, session_factory, write_session
from duly.store.models import Instance, StepFact, Task

from .conftest import NOW, PROCESS, WEEK_A, WEEK_B, History

QUOTES = ReportQuery(process=PROCESS, weeks=3)
HOUR = timedelta(hours=1)


def counted(report: FunnelReport) -> list[tuple[str, int, float | None]]:
    return [(s.step, s.instances, s.share) for s in report.steps]


def test_a_reps_funnel_has_the_same_base_as_the_admins_and_no_share_over_100(
    history: History, definitions: Definitions
) -> None:
    # ben calls, the decision sends it to ana's review; Q-2: ana calls and reviews;
    # ben only. Decisions and actions have no assignee, as the engine writes them.
    for key, caller in (("Q-1", "ben"), ("Q-2", "ana"), ("Q-3", "ben")):
        at = WEEK_A + 14 * HOUR
        history.fact(key, at, rep=caller, outcome="reached", met=True, rung=0, seconds=60)
        history.fact(key, at + HOUR, step="send-summary", kind="action", rep=None, team=None)
        history.fact(key, at + HOUR, step="check-size", kind="decision", rep=None, team=None)
    for key in ("Q-1", "Q-2"):
        history.fact(key, WEEK_A + 20 * HOUR, step="manager-review", rep="ana", met=True)
    with history.acts.sessions() as session:
        ana = funnel(session, QUOTES.model_copy(update={"rep": "ana"}), definitions=definitions,
                     now=NOW)  # fmt: skip
        everyone = funnel(session, QUOTES, definitions=definitions, now=NOW)
        seen_by_ana = funnel(
            session,
            QUOTES.model_copy(update={"visible_reps": ("ana",), "visible_teams": ()}),
            definitions=definitions,
            now=NOW,
        )
    # ana's base: the two instances she worked on; every step of them counts, decisions too
    assert ana.started == 2
    assert counted(ana) == [
        ("call-customer", 2, 1.0),
        ("send-summary", 2, 1.0),
        ("check-size", 2, 1.0),
        ("manager-review", 2, 1.0),
    ]
    assert counted(seen_by_ana) == counted(ana)
    assert everyone.started == 3
    assert counted(everyone) == [
        ("call-customer", 3, 1.0),
        ("send-summary", 3, 1.0),
        ("check-size", 3, 1.0),
        ("manager-review", 2, pytest.approx(2 / 3)),
    ]


def test_instances_in_progress_count_for_the_steps_they_reached(
    history: History, definitions: Definitions
) -> None:
    # ten leads entered; nine were called, one is still waiting for its call (an open task)
    for n in range(9):
        history.fact(f"Q-{n}", WEEK_B + n * HOUR, outcome="reached", met=True, rung=0)
    history.open_task("Q-9", WEEK_B + 12 * HOUR, WEEK_B + 40 * HOUR, "ana")
    with history.acts.sessions() as session:
        report = funnel(session, QUOTES, definitions=definitions, now=NOW)
    assert report.started == 10
    (call,) = report.steps
    assert (call.step, call.instances, call.visits, call.open, call.share) == (
        "call-customer",
        10,
        10,
        1,
        1.0,
    )


def test_an_instance_started_before_the_period_is_not_in_the_base(
    history: History, definitions: Definitions
) -> None:
    # Q-1 started before the period; its second call in the period must not raise a share
    history.fact("Q-1", WEEK_A - 24 * HOUR, outcome="voicemail", met=True)
    history.fact("Q-1", WEEK_A + 14 * HOUR, visit=2, outcome="reached", met=True)
    history.fact("Q-2", WEEK_A + 15 * HOUR, outcome="reached", met=True)
    with history.acts.sessions() as session:
        report = funnel(session, QUOTES, definitions=definitions, now=NOW)
    assert report.started == 1
    assert counted(report) == [("call-customer", 1, 1.0)]


def test_a_funnel_across_processes_is_refused(history: History, definitions: Definitions) -> None:
    history.fact("Q-1", WEEK_A + 14 * HOUR, outcome="reached", met=True)
    with (
        history.acts.sessions() as session,
        pytest.raises(ReportError, match="a funnel follows the steps of one process"),
    ):
        funnel(session, ReportQuery(weeks=3), definitions=definitions, now=NOW)


# --- property: random fact tables ---------------------------------------------------------------

STEPS = ("call-customer", "send-summary", "check-size", "manager-review", "won", "lost")
REPS = ("ana", "ben", "chloe", None)
TEAMS = ("inbound-sales", "enterprise", None)
visit_strategy = st.tuples(
    st.sampled_from(STEPS),
    st.sampled_from(REPS),
    st.sampled_from(TEAMS),
    st.integers(min_value=-200, max_value=600),  # hours from the start of week A
    st.booleans(),  # still an open task rather than a fact
)
instance_strategy = st.tuples(
    st.integers(min_value=-300, max_value=600),  # started, hours from week A
    st.lists(visit_strategy, min_size=0, max_size=6),
)


def _database(instances: list[tuple[int, list[tuple[str, str | None, str | None, int, bool]]]],
              seed: int) -> Engine:  # fmt: skip
    """A fresh SQLite database holding the instances, rows written in a shuffled order."""
    engine = make_engine("sqlite://")
    create_all(engine)
    rows: list[object] = []
    for n, (started, visits) in enumerate(instances):
        instance_id = f"{PROCESS}/R-{n}"
        start = WEEK_A + timedelta(hours=started)
        rows.append(
            Instance(
                id=instance_id,
                workflow_id=instance_id,
                process=PROCESS,
                version=1,
                hash="h",
                business_key=f"R-{n}",
                started_at=start,
            )
        )
        numbered: dict[str, int] = {}
        for step, rep, team, at, is_open in visits:
            # visits are numbered per step, as the engine numbers them
            visit = numbered[step] = numbered.get(step, 0) + 1
            opened = max(start, WEEK_A + timedelta(hours=at))
            if is_open:
                rows.append(
                    Task(
                        id=f"{instance_id}/{step}/{visit}",
                        instance_id=instance_id,
                        process=PROCESS,
                        step=step,
                        visit=visit,
                        title=step,
                        assignee=rep,
                        team=team,
                        opened_at=opened,
                    )
                )
            else:
                rows.append(
                    StepFact(
                        instance_id=instance_id,
                        process=PROCESS,
                        version=1,
                        step=step,
                        kind="task",
                        visit=visit,
                        assignee=rep,
                        team=team,
                        opened_at=opened,
                        closed_at=opened + HOUR,
                    )
                )
    head = [r for r in rows if isinstance(r, Instance)]
    tail = [r for r in rows if not isinstance(r, Instance)]
    random.Random(seed).shuffle(head)
    random.Random(seed + 1).shuffle(tail)
    with write_session(session_factory(engine)) as session:
        session.add_all(head)
        session.flush()
        session.add_all(tail)
    return engine


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    instances=st.lists(instance_strategy, min_size=0, max_size=8),
    seed=st.integers(min_value=0, max_value=1000),
    reps=st.lists(st.sampled_from(("ana", "ben", "chloe")), unique=True, max_size=3),
    teams=st.lists(st.sampled_from(("inbound-sales", "enterprise")), unique=True, max_size=2),
)
def test_no_share_exceeds_100_and_the_scope_order_does_not_matter(
    definitions: Definitions,
    instances: list[tuple[int, list[tuple[str, str | None, str | None, int, bool]]]],
    seed: int,
    reps: list[str],
    teams: list[str],
) -> None:
    one, other = _database(instances, seed), _database(instances, seed + 7)
    scopes = [
        QUOTES,
        QUOTES.model_copy(update={"visible_reps": tuple(reps), "visible_teams": tuple(teams)}),
        QUOTES.model_copy(
            update={"rep": reps[0] if reps else None, "team": teams[0] if teams else None}
        ),  # fmt: skip
    ]
    reversed_scopes = [
        QUOTES,
        QUOTES.model_copy(
            update={"visible_teams": tuple(reversed(teams)), "visible_reps": tuple(reversed(reps))}
        ),
        QUOTES.model_copy(
            update={"team": teams[0] if teams else None, "rep": reps[0] if reps else None}
        ),  # fmt: skip
    ]
    try:
        for scope, same in zip(scopes, reversed_scopes, strict=True):
            with session_factory(one)() as a, session_factory(other)() as b:
                report = funnel(a, scope, definitions=definitions, now=NOW)
                again = funnel(b, same, definitions=definitions, now=NOW)
            assert all(s.share is None or 0 <= s.share <= 1 for s in report.steps)
            assert all(s.instances <= report.started for s in report.steps)
            assert (report.started, report.steps) == (again.started, again.steps)
    finally:
        one.dispose()
        other.dispose()


def test_the_property_database_is_what_it_says() -> None:
    """The generator's own check: an instance started in the period with an open task."""
    engine = _database([(10, [("call-customer", "ana", "inbound-sales", 12, True)])], 1)
    try:
        with session_factory(engine)() as session:
            assert session.get(Task, f"{PROCESS}/R-0/call-customer/1") is not None
            instance = session.get(Instance, f"{PROCESS}/R-0")
            assert instance is not None
            assert instance.started_at == WEEK_A.astimezone(UTC) + timedelta(hours=10)
    finally:
        engine.dispose()
