"""Alerts resolved with their task: once, however often an activity is retried; and alerts
recorded before revision 0006 get their task and, when it has closed, their resolution."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import text
from sqlmodel import select

from activities.messages import CloseTaskInput
from activities.process import ProcessActivities, _lateness
from duly.store import migrations
from duly.store.db import SessionFactory, make_engine
from duly.store.models import Alert

from .conftest import T0
from .test_activities import DUE, INSTANCE, escalate_input, open_input

TASK = f"{INSTANCE}/call-customer/1"


def alerts(sessions: SessionFactory) -> list[Alert]:
    with sessions() as session:
        return list(session.exec(select(Alert).order_by(Alert.id)))


def test_completing_a_task_resolves_its_alerts_once(
    acts: ProcessActivities, sessions: SessionFactory, instance: str
) -> None:
    acts.open_task(open_input(assign="user:ana"))
    acts.escalate(escalate_input())
    [raised] = alerts(sessions)
    assert (raised.task_id, raised.resolved_at) == (TASK, None)
    closed = CloseTaskInput(
        task_id=TASK,
        status="completed",
        outcome="reached",
        closed_by="ana",
        closed_at=DUE + timedelta(hours=3, minutes=10),
    )
    acts.close_task(closed)
    acts.close_task(closed.model_copy(update={"closed_at": DUE + timedelta(days=1)}))
    [resolved] = alerts(sessions)
    assert resolved.resolved_at == DUE + timedelta(hours=3, minutes=10)
    assert resolved.resolution == "completed 3 h 10 min late by ana"
    assert (resolved.resolved_by, resolved.late_seconds) == ("ana", 3 * 3600 + 600)
    assert resolved.acknowledged_at is None


def test_a_task_cancelled_by_an_event_resolves_its_alerts(
    acts: ProcessActivities, sessions: SessionFactory, instance: str
) -> None:
    acts.open_task(open_input(assign="user:ana"))
    acts.escalate(escalate_input())
    acts.close_task(
        CloseTaskInput(
            task_id=TASK, status="cancelled", outcome="event:quote.accepted", closed_at=T0
        )
    )
    [resolved] = alerts(sessions)
    assert resolved.resolution == "cancelled by quote.accepted, on time"
    assert resolved.late_seconds == 0


def test_a_reassignment_resolves_the_alerts_so_far_and_its_own_stays_open(
    acts: ProcessActivities, sessions: SessionFactory, instance: str
) -> None:
    acts.open_task(open_input(assign="user:ana"))
    acts.escalate(escalate_input())
    handover = escalate_input(
        rung=2, level="escalation", notify=None, reassign="user:ben", by="maria",
        fired_at=DUE + timedelta(hours=1),
    )  # fmt: skip
    acts.escalate(handover)
    acts.escalate(handover)  # a retry changes nothing
    breach, escalation = alerts(sessions)
    assert breach.resolution == "reassigned to ben (was ana), 1 h late"
    assert (breach.resolved_by, breach.resolved_at) == ("maria", DUE + timedelta(hours=1))
    assert (escalation.recipient, escalation.task_id, escalation.resolved_at) == ("ben", TASK, None)


def test_a_rung_for_a_task_already_closed_is_resolved_when_written(
    acts: ProcessActivities, sessions: SessionFactory, instance: str
) -> None:
    acts.open_task(open_input(assign="user:ana"))
    acts.close_task(
        CloseTaskInput(task_id=TASK, status="completed", outcome="reached", closed_by="ana",
                       closed_at=DUE - timedelta(minutes=1))
    )  # fmt: skip
    acts.escalate(escalate_input())
    [late] = alerts(sessions)
    assert late.resolved_at == DUE - timedelta(minutes=1)
    assert late.resolution == "its task was already completed"


def test_migration_0006_gives_old_alerts_their_task_and_resolves_those_of_closed_tasks(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        migrations.upgrade(engine, "0004")
        with engine.begin() as db:
            db.execute(
                text(
                    "INSERT INTO instances (id, workflow_id, process, version, hash, "
                    "business_key, status, data, started_at) VALUES ('q/Q-1/r', 'q/Q-1', 'q', 1, "
                    "'h', 'Q-1', 'running', '{}', '2026-11-18 14:00:00.000000')"
                )
            )
            for task, status in (("q/Q-1/r/call/1", "completed"), ("q/Q-1/r/call/2", "open")):
                db.execute(
                    text(
                        "INSERT INTO tasks (id, instance_id, process, step, visit, title, status,"
                        " fields, outcomes, opened_at, closed_at) VALUES (:id, 'q/Q-1/r', 'q', "
                        "'call', :visit, 'Call', :status, '{}', '[]', "
                        "'2026-11-18 14:00:00.000000', :closed)"
                    ),
                    {
                        "id": task,
                        "visit": int(task[-1]),
                        "status": status,
                        "closed": "2026-11-19 10:00:00.000000" if status != "open" else None,
                    },
                )
            keys = [
                ("q/Q-1/r/step:call/1/0", "step:call"),
                ("q/Q-1/r/step:call/2/1", "step:call"),
                ("q/Q-1/r/call/2/reassign/abc", "step:call"),
                ("q/Q-1/r/first-response/0/0", "first-response"),
            ]
            for n, (key, clock) in enumerate(keys):
                db.execute(
                    text(
                        "INSERT INTO alerts (key, event_key, instance_id, process, step, clock, "
                        "level, recipient, message, created_at) VALUES (:key, :event, 'q/Q-1/r',"
                        " 'q', 'call', :clock, 'breach', 'maria', 'late', "
                        "'2026-11-18 15:00:00.000000')"
                    ),
                    {"key": f"{key}:maria{n}", "event": key, "clock": clock},
                )
        migrations.upgrade(engine)
        with engine.connect() as db:
            found = db.execute(
                text("SELECT event_key, task_id, resolved_at IS NOT NULL FROM alerts ORDER BY id")
            ).all()
        assert [tuple(row) for row in found] == [
            ("q/Q-1/r/step:call/1/0", "q/Q-1/r/call/1", 1),
            ("q/Q-1/r/step:call/2/1", "q/Q-1/r/call/2", 0),
            ("q/Q-1/r/call/2/reassign/abc", "q/Q-1/r/call/2", 0),
            ("q/Q-1/r/first-response/0/0", None, 0),
        ]
    finally:
        engine.dispose()


def test_lateness_reads_in_days_hours_and_minutes() -> None:
    due = DUE
    assert _lateness(due, due - timedelta(hours=1)) == "on time"
    assert _lateness(due, due + timedelta(seconds=20)) == "less than a minute late"
    assert _lateness(due, due + timedelta(hours=2)) == "2 h late"
    assert _lateness(due, due + timedelta(days=1, minutes=5)) == "1 d 5 min late"
    assert _lateness(None, due) == "with no due time"
