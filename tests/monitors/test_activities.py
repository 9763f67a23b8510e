"""The monitor activities on SQLite and PostgreSQL: measures, hysteresis, one alert per crossing."""

from __future__ import annotations

import threading
from datetime import timedelta

from prometheus_client import REGISTRY
from sqlmodel import col, select

from activities.monitors import MonitorActivities
from duly.language.model import MonitorFilter, MonitorSpec
from duly.monitors.messages import MeasureInput, Period, RecordCheckInput, RecordCheckResult
from duly.store.db import SessionFactory
from duly.store.models import Alert, Delivery, MonitorCheck, MonitorState

from .conftest import T0, add_fact, add_instance, close_tasks, open_tasks


def check(
    acts: MonitorActivities, spec: MonitorSpec, minutes: int, *, team: str | None = "support"
) -> RecordCheckResult:
    """Measure and record the slot `minutes` after T0, as the workflow does."""
    at = T0 + timedelta(minutes=minutes)
    value = acts.measure(MeasureInput(monitor=spec, at=at)).value
    return acts.record(
        RecordCheckInput(
            monitor=spec, slot=f"slot-{minutes}", value=value, checked_at=at, manager_team=team
        )
    )


def alerts(sessions: SessionFactory) -> list[Alert]:
    with sessions() as session:
        return list(session.exec(select(Alert).order_by(col(Alert.id))))


def test_support_backlog_alerts_once_on_crossing_and_once_on_recovery(
    sessions: SessionFactory, backlog: MonitorSpec
) -> None:
    acts = MonitorActivities(sessions)
    add_instance(sessions)
    open_tasks(sessions, 41)

    first = check(acts, backlog, 0)
    assert (first.state, first.transition, first.notified) == ("alerting", "crossed", ["omar"])
    [alert] = alerts(sessions)
    assert (alert.level, alert.recipient, alert.process) == ("threshold", "omar", "support-case")
    assert "open tasks (process support-case) is 41, above 40" in alert.message
    with sessions() as session:
        [email] = session.exec(select(Delivery)).all()
    assert (email.user_id, email.channel, email.kind) == ("omar", "email", "alert.threshold")

    still = check(acts, backlog, 15)
    assert (still.state, still.transition) == ("alerting", None)
    close_tasks(sessions, 3)  # 38: under the line, not yet back to 35
    between = check(acts, backlog, 30)
    assert (between.state, between.transition) == ("alerting", None)
    assert len(alerts(sessions)) == 1

    close_tasks(sessions, 3)  # 35
    back = check(acts, backlog, 45)
    assert (back.state, back.transition, back.notified) == ("ok", "recovered", ["omar"])
    recovery = alerts(sessions)[-1]
    assert recovery.level == "recovery" and "back to 35" in recovery.message
    assert len(alerts(sessions)) == 2

    with sessions() as session:
        state = session.get_one(MonitorState, "support-backlog")
        checks = session.exec(select(MonitorCheck).order_by(col(MonitorCheck.checked_at))).all()
        deliveries = session.exec(select(Delivery)).all()
    assert (state.state, state.last_value, state.last_slot) == ("ok", 35.0, "slot-45")
    assert state.changed_at == T0 + timedelta(minutes=45)
    assert [(c.value, c.state, c.transition) for c in checks] == [
        (41.0, "alerting", "crossed"),
        (41.0, "alerting", None),
        (38.0, "alerting", None),
        (35.0, "ok", "recovered"),
    ]
    assert len(deliveries) == 2


def test_a_retried_record_finds_its_check_and_alerts_nobody_again(
    sessions: SessionFactory, backlog: MonitorSpec
) -> None:
    acts = MonitorActivities(sessions)
    add_instance(sessions)
    open_tasks(sessions, 41)
    record = RecordCheckInput(
        monitor=backlog, slot="2026-11-30T09:15Z", value=41, checked_at=T0, manager_team="support"
    )
    counted = {"monitor": "support-backlog", "state": "alerting"}
    before = REGISTRY.get_sample_value("duly_monitor_checks_total", counted) or 0
    first = acts.record(record)
    again = acts.record(record)
    # the monitor-checks counter (/metrics) counts the check once
    assert REGISTRY.get_sample_value("duly_monitor_checks_total", counted) == before + 1
    assert first.transition == "crossed" and not first.repeated
    assert (again.state, again.transition, again.notified, again.repeated) == (
        "alerting",
        "crossed",
        ["omar"],
        True,
    )
    assert len(alerts(sessions)) == 1
    with sessions() as session:
        assert len(session.exec(select(MonitorCheck)).all()) == 1
        assert len(session.exec(select(Delivery)).all()) == 1


def test_two_workers_checking_at_once_alert_once(
    sessions: SessionFactory, backlog: MonitorSpec
) -> None:
    """Eight concurrent records, of one slot and of other slots, all seeing 41: one alert."""
    acts = MonitorActivities(sessions)
    results: list[RecordCheckResult] = []
    errors: list[BaseException] = []

    def record(slot: int) -> None:
        try:
            results.append(
                acts.record(
                    RecordCheckInput(
                        monitor=backlog,
                        slot=f"slot-{slot % 4}",
                        value=41,
                        checked_at=T0 + timedelta(minutes=slot % 4),
                        manager_team="support",
                    )
                )
            )
        except BaseException as exc:  # surfaced below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sum(r.transition == "crossed" and not r.repeated for r in results) == 1
    assert [a.recipient for a in alerts(sessions)] == ["omar"]
    with sessions() as session:
        assert len(session.exec(select(MonitorCheck)).all()) == 4


def test_an_older_check_arriving_late_is_kept_but_moves_nothing(
    sessions: SessionFactory, backlog: MonitorSpec
) -> None:
    acts = MonitorActivities(sessions)

    def record(slot: str, minutes: int, value: float) -> RecordCheckResult:
        at = T0 + timedelta(minutes=minutes)
        return acts.record(RecordCheckInput(monitor=backlog, slot=slot, value=value, checked_at=at))

    assert record("late", 30, 20).transition is None
    stale = record("early", 0, 50)  # a slot retried past the next one: 50 is old news
    assert (stale.state, stale.transition) == ("ok", None)
    with sessions() as session:
        state = session.get_one(MonitorState, "support-backlog")
        assert (state.last_slot, state.last_value) == ("late", 20.0)
        assert len(session.exec(select(MonitorCheck)).all()) == 2
    assert alerts(sessions) == []


def test_measures_count_open_and_overdue_tasks_narrowed_by_the_filter(
    sessions: SessionFactory, backlog: MonitorSpec
) -> None:
    acts = MonitorActivities(sessions)
    add_instance(sessions)
    open_tasks(sessions, 3, due_at=T0 - timedelta(minutes=1))  # overdue at T0
    open_tasks(sessions, 2, due_at=T0 + timedelta(hours=1), first_visit=4)
    open_tasks(sessions, 4, step="investigate", team="escalations")  # no due time
    close_tasks(sessions, 1)

    def value(measure: str, **where: str) -> float | None:
        spec = backlog.model_copy(update={"measure": measure, "filter": MonitorFilter(**where)})
        return acts.measure(MeasureInput(monitor=spec, at=T0)).value

    assert value("open_tasks", process="support-case") == 8
    assert value("open_tasks", process="quote-follow-up") == 0
    assert value("open_tasks", team="support") == 4
    assert value("open_tasks", step="investigate") == 4
    assert value("overdue_tasks", process="support-case") == 2
    assert value("overdue_tasks", step="investigate") == 0


def test_attainment_is_the_share_of_this_periods_visits_that_met_their_sla(
    sessions: SessionFactory, backlog: MonitorSpec
) -> None:
    acts = MonitorActivities(sessions)
    add_instance(sessions)
    spec = backlog.model_copy(update={"measure": "attainment"})

    def value(period: Period = "week", tz: str = "Europe/Berlin") -> float | None:
        at = T0  # Monday 2026-11-30 10:15 in Berlin
        measured = MeasureInput(monitor=spec, at=at, period=period, timezone=tz)
        return acts.measure(measured).value

    assert value() is None  # nothing closed yet: nothing to compare
    add_fact(sessions, 1, closed_at=T0 - timedelta(minutes=10), sla_met=True)
    add_fact(sessions, 2, closed_at=T0 - timedelta(minutes=20), sla_met=True)
    add_fact(sessions, 3, closed_at=T0 - timedelta(minutes=30), sla_met=False)
    add_fact(sessions, 4, closed_at=T0 - timedelta(minutes=40), sla_met=None)  # no SLA
    add_fact(sessions, 5, closed_at=T0 - timedelta(days=1), sla_met=False)  # last week
    add_fact(sessions, 6, closed_at=T0 + timedelta(minutes=5), sla_met=False)  # after `at`
    assert value() == 200 / 3
    # Sunday's miss is last week's in either zone, this month's, and (in Berlin) not today's
    assert value(tz="UTC") == 200 / 3
    assert value(period="month") == 50.0
    assert value(period="day") == 200 / 3


def test_notify_reaches_the_manager_a_team_and_a_user_or_else_the_admins(
    sessions: SessionFactory, backlog: MonitorSpec
) -> None:
    acts = MonitorActivities(sessions)
    everyone = backlog.model_copy(
        update={
            "monitor": "everyone",
            "notify": ["manager", "team:support", "user:sam", "user:omar"],
        }
    )
    crossed = acts.record(
        RecordCheckInput(
            monitor=everyone, slot="s1", value=41, checked_at=T0, manager_team="support"
        )
    )
    # once each, the manager first: omar is both the manager and named as a user
    assert crossed.notified == ["omar", "dev", "emma", "felix", "sam"]
    # a process without a team, and nobody else named: the admins hear of it
    orphan = backlog.model_copy(update={"monitor": "orphan"})
    alone = acts.record(
        RecordCheckInput(monitor=orphan, slot="s1", value=41, checked_at=T0, manager_team=None)
    )
    assert alone.notified == ["sam"]
    levels = {(a.event_key.split("/")[1], a.recipient, a.level) for a in alerts(sessions)}
    assert ("orphan", "sam", "threshold") in levels and len(levels) == 6
