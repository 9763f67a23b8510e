"""The process activities on a real database: idempotent under retries, fair, durable."""

from __future__ import annotations

import re
import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlmodel import select
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.messages import (
    DEFINITION_NOT_STORED,
    CloseTaskInput,
    EscalateInput,
    FailureAlertInput,
    FinishInstanceInput,
    OpenTaskInput,
    RecordSlaEventsInput,
    RecordStepInput,
    RunActionInput,
    SlaEvent,
    StepWrites,
)
from activities.process import ProcessActivities
from duly.settings import Settings
from duly.store.db import SessionFactory, session_factory, write_session
from duly.store.models import (
    Alert,
    Definition,
    Instance,
    Rotation,
    SlaEventRow,
    StepFact,
    Task,
    User,
    UserChannel,
)

from .conftest import T0, start_input

INSTANCE = "quote-follow-up/Q-1"
DUE = T0 + timedelta(days=2, hours=8)  # 2026-11-20 22:00 UTC, 17:00 in New York


def rows(sessions: SessionFactory, model: type) -> list:
    with sessions() as session:
        return list(session.exec(select(model)))


def open_input(
    visit: int = 1, assign: str = "round-robin:inbound-sales", **changes
) -> OpenTaskInput:
    values = {
        "task_id": f"{INSTANCE}/call-customer/{visit}",
        "instance_id": INSTANCE,
        "process": "quote-follow-up",
        "step": "call-customer",
        "visit": visit,
        "title": "Call Ana about quote Q-1",
        "assign": assign,
        "team": "inbound-sales",
        "fields": {"budget": "number"},
        "outcomes": ["reached", "lost"],
        "opened_at": T0,
        "due_at": DUE,
        **changes,
    }
    return OpenTaskInput(**values)


def escalate_input(rung: int = 1, **changes) -> EscalateInput:
    values = {
        "alert_key": f"{INSTANCE}/step:call-customer/1/{rung}",
        "instance_id": INSTANCE,
        "process": "quote-follow-up",
        "step": "call-customer",
        "clock": "step:call-customer",
        "rung": rung,
        "at_percent": 100.0,
        "level": "breach",
        "notify": "manager",
        "task_id": f"{INSTANCE}/call-customer/1",
        "assignee": "ana",
        "team": "inbound-sales",
        "due_at": DUE,
        "fired_at": DUE,
        "title": "Call Ana about quote Q-1",
        **changes,
    }
    return EscalateInput(**values)


def rotation_index(sessions: SessionFactory, team: str = "inbound-sales") -> int:
    with sessions() as session:
        return session.get_one(Rotation, team).next_index


def assignment_error(caught: pytest.ExceptionInfo[ApplicationError]) -> str:
    assert caught.value.type == "AssignmentError"
    assert caught.value.non_retryable
    return str(caught.value)


# --- idempotency: every activity twice, as a retry would ------------------------------------


def test_start_instance_twice_records_one_instance_and_one_definition(acts, sessions) -> None:
    acts.start_instance(start_input())
    acts.start_instance(start_input())
    [instance] = rows(sessions, Instance)
    assert (instance.id, instance.status, instance.business_key) == (INSTANCE, "running", "Q-1")
    assert instance.started_at == T0
    assert len(rows(sessions, Definition)) == 1


def test_start_instance_keeps_its_own_hash_when_the_version_is_stored_differently(
    acts, sessions
) -> None:
    acts.start_instance(start_input())
    acts.start_instance(start_input("quote-follow-up/Q-2", hash="b" * 64))
    with sessions() as session:
        assert session.get_one(Instance, "quote-follow-up/Q-2").hash == "b" * 64
        [definition] = session.exec(select(Definition)).all()
    assert definition.hash == "a" * 64


def test_finish_instance_twice_keeps_the_first_ending(acts, sessions, instance) -> None:
    ended = T0 + timedelta(days=1)
    acts.finish_instance(
        FinishInstanceInput(
            instance_id=instance, status="completed", result="won", data={"a": 1}, ended_at=ended
        )
    )
    acts.finish_instance(
        FinishInstanceInput(
            instance_id=instance, status="failed", result="failed", ended_at=ended + timedelta(1)
        )
    )
    [row] = rows(sessions, Instance)
    assert (row.status, row.result, row.data, row.ended_at) == ("completed", "won", {"a": 1}, ended)


def test_finish_instance_of_an_unknown_instance_is_a_clear_error(acts) -> None:
    with pytest.raises(ApplicationError, match="no instance 'x/1' is recorded") as caught:
        acts.finish_instance(
            FinishInstanceInput(instance_id="x/1", status="completed", result="won", ended_at=T0)
        )
    assert caught.value.non_retryable


def test_open_task_twice_opens_one_task_and_picks_once(acts, sessions, instance) -> None:
    first = acts.open_task(open_input())
    again = acts.open_task(open_input())
    assert first == again
    assert (first.assignee, first.team) == ("ana", "inbound-sales")
    [task] = rows(sessions, Task)
    assert (task.status, task.fields, task.outcomes) == (
        "open",
        {"budget": "number"},
        ["reached", "lost"],
    )
    assert task.due_at == DUE
    assert rotation_index(sessions) == 1


def test_close_task_twice_closes_once(acts, sessions, instance) -> None:
    acts.open_task(open_input())
    closed = CloseTaskInput(
        task_id=open_input().task_id,
        status="completed",
        outcome="reached",
        note="spoke to Ana",
        closed_by="ana",
        closed_at=T0 + timedelta(hours=3),
    )
    acts.close_task(closed)
    acts.close_task(closed.model_copy(update={"status": "cancelled", "closed_at": DUE}))
    [task] = rows(sessions, Task)
    assert (task.status, task.outcome, task.note, task.closed_by) == (
        "completed",
        "reached",
        "spoke to Ana",
        "ana",
    )
    assert task.closed_at == T0 + timedelta(hours=3)


def call_fact(instance: str, **changes) -> RecordStepInput:
    """The fact of the first call, reached by ana three hours after it opened."""
    values = {
        "instance_id": instance,
        "process": "quote-follow-up",
        "version": 1,
        "step": "call-customer",
        "kind": "task",
        "visit": 1,
        "assignee": "ana",
        "opened_at": T0,
        "closed_at": T0 + timedelta(hours=3),
        "outcome": "reached",
        **changes,
    }
    return RecordStepInput(**values)


def test_record_step_twice_writes_one_fact(acts, sessions, instance) -> None:
    fact = call_fact(
        instance,
        team="inbound-sales",
        due_at=DUE,
        sla_met=True,
        highest_rung=0,
        business_seconds=10800.0,
    )
    acts.record_step(fact)
    acts.record_step(fact)
    acts.record_step(fact.model_copy(update={"visit": 2}))
    facts = sorted(rows(sessions, StepFact), key=lambda f: f.visit)
    assert [f.visit for f in facts] == [1, 2]
    assert facts[0].sla_met is True
    assert facts[0].business_seconds == 10800.0
    assert facts[0].closed_at == T0 + timedelta(hours=3)


def test_record_sla_events_twice_appends_each_event_once(acts, sessions, instance) -> None:
    events = [
        SlaEvent(clock="step:call-customer", kind="start", at=T0, step="call-customer", visit=1),
        SlaEvent(clock="step:call-customer", kind="breach", at=DUE, due_at=DUE),
    ]
    acts.record_sla_events(RecordSlaEventsInput(instance_id=instance, first_seq=0, events=events))
    acts.record_sla_events(RecordSlaEventsInput(instance_id=instance, first_seq=0, events=events))
    acts.record_sla_events(
        RecordSlaEventsInput(instance_id=instance, first_seq=1, events=events[1:])
    )
    stored = sorted(rows(sessions, SlaEventRow), key=lambda e: e.seq)
    assert [(e.seq, e.kind) for e in stored] == [(0, "start"), (1, "breach")]
    assert stored[1].due_at == DUE


def step_writes(instance: str) -> StepWrites:
    """What the first call's close leaves to write: the close, its fact, its clock's stop."""
    closed_at = T0 + timedelta(hours=3)
    return StepWrites(
        closes=[
            CloseTaskInput(
                task_id=open_input().task_id,
                status="completed",
                outcome="reached",
                closed_by="ana",
                closed_at=closed_at,
            )
        ],
        steps=[call_fact(instance)],
        sla_events=RecordSlaEventsInput(
            instance_id=instance,
            first_seq=1,
            events=[SlaEvent(clock="step:call-customer", kind="stop", at=closed_at)],
        ),
    )


def test_record_writes_twice_writes_each_part_once(acts, sessions, instance) -> None:
    acts.open_task(open_input())
    writes = step_writes(instance)
    acts.record_writes(writes)
    acts.record_writes(writes)  # a retry
    [task] = rows(sessions, Task)
    assert (task.status, task.outcome, task.closed_at) == (
        "completed",
        "reached",
        T0 + timedelta(hours=3),
    )
    assert [(f.step, f.visit) for f in rows(sessions, StepFact)] == [("call-customer", 1)]
    assert [(e.seq, e.kind) for e in rows(sessions, SlaEventRow)] == [(1, "stop")]


def test_writes_carried_by_open_task_stand_when_no_one_can_be_assigned(
    acts, sessions, instance
) -> None:
    acts.open_task(open_input())
    nobody = open_input(visit=2, assign="owner", owner="zoe", team=None)
    with pytest.raises(ApplicationError) as caught:
        acts.open_task(nobody.model_copy(update={"writes": step_writes(instance)}))
    assignment_error(caught)
    # the first task's close and fact are written; the second task is not
    [task] = rows(sessions, Task)
    assert (task.visit, task.status) == (1, "completed")
    assert len(rows(sessions, StepFact)) == 1
    assert len(rows(sessions, SlaEventRow)) == 1


def test_finish_instance_writes_what_it_carries_once(acts, sessions, instance) -> None:
    acts.open_task(open_input())
    done = FinishInstanceInput(
        instance_id=instance,
        status="completed",
        result="won",
        ended_at=T0 + timedelta(hours=4),
        writes=step_writes(instance),
    )
    acts.finish_instance(done)
    acts.finish_instance(done)  # a retry
    [stored] = rows(sessions, Instance)
    assert (stored.status, stored.result) == ("completed", "won")
    assert rows(sessions, Task)[0].status == "completed"
    assert len(rows(sessions, StepFact)) == 1
    assert len(rows(sessions, SlaEventRow)) == 1


def test_a_start_carried_by_open_task_records_the_instance_before_its_task_once(
    acts, sessions
) -> None:
    opening = open_input().model_copy(update={"writes": StepWrites(start=start_input())})
    first = acts.open_task(opening)
    assert acts.open_task(opening) == first  # a retry
    [stored] = rows(sessions, Instance)
    assert (stored.id, stored.status) == (INSTANCE, "running")
    [task] = rows(sessions, Task)
    assert (task.instance_id, task.assignee) == (INSTANCE, "ana")
    assert len(rows(sessions, Definition)) == 1


def test_a_carried_start_without_its_stored_definition_writes_nothing(acts, sessions) -> None:
    unknown = StepWrites(start=start_input(compiled_json=""), steps=[call_fact(INSTANCE)])
    with pytest.raises(ApplicationError, match="is not stored; send its content") as caught:
        acts.open_task(open_input().model_copy(update={"writes": unknown}))
    assert caught.value.type == DEFINITION_NOT_STORED
    for model in (Instance, Task, StepFact):
        assert rows(sessions, model) == []


def test_run_action_writes_what_it_carries_before_it_runs_and_once(
    acts, sessions, instance
) -> None:
    acts.open_task(open_input())
    clash = RunActionInput(
        action="set",
        instance_id=instance,
        step="mark",
        visit=1,
        params={"quote": "flat", "quote.status": "nested"},
        idempotency_key=f"{instance}/mark/1",
        writes=step_writes(instance),
    )
    for _ in range(2):  # the action fails, and a retry fails the same way
        with pytest.raises(ApplicationError, match="needs 'quote' to be a map"):
            acts.run_action(clash)
    # what came before the action is written all the same, once
    assert rows(sessions, Task)[0].status == "completed"
    assert len(rows(sessions, StepFact)) == 1
    assert len(rows(sessions, SlaEventRow)) == 1


def test_escalate_twice_writes_one_alert_per_recipient(acts, sessions, instance) -> None:
    acts.open_task(open_input())
    first = acts.escalate(escalate_input())
    again = acts.escalate(escalate_input())
    assert first == again
    assert first.notified == ["maria"]
    assert first.assignee == "ana"
    [alert] = rows(sessions, Alert)
    assert (alert.key, alert.recipient, alert.level) == (
        f"{INSTANCE}/step:call-customer/1/1:maria",
        "maria",
        "breach",
    )
    assert alert.created_at == DUE


def test_escalate_writes_its_sla_events_with_the_alert_once(acts, sessions, instance) -> None:
    acts.open_task(open_input())
    start = SlaEvent(clock="step:call-customer", kind="start", at=T0, step="call-customer")
    acts.record_sla_events(RecordSlaEventsInput(instance_id=instance, first_seq=0, events=[start]))
    pending = [
        SlaEvent(clock="step:call-customer", kind="breach", at=DUE, due_at=DUE),
        SlaEvent(clock="step:call-customer", kind="escalation", at=DUE, detail="rung 1"),
    ]
    rung = escalate_input(sla_events=pending, first_seq=1)
    acts.escalate(rung)
    acts.escalate(rung)  # a retry
    stored = sorted(rows(sessions, SlaEventRow), key=lambda e: e.seq)
    assert [(e.seq, e.kind) for e in stored] == [(0, "start"), (1, "breach"), (2, "escalation")]
    assert len(rows(sessions, Alert)) == 1


def test_alert_messages_parse_a_stored_definition_once(acts, sessions, definitions) -> None:
    from duly.notify.messages import load_record

    # a storm's thousand alerts about one process read its definition, not parse it each time
    compiled = definitions.processes["quote-follow-up"].model_dump_json()
    for key in ("Q-7", "Q-8"):
        acts.start_instance(start_input(f"quote-follow-up/{key}", compiled_json=compiled))
    with sessions() as session:
        first = load_record(session, "quote-follow-up/Q-7")
        second = load_record(session, "quote-follow-up/Q-8")
    assert first.process is not None and first.process.name == "quote-follow-up"
    assert second.process is first.process
    assert first.zone_name == "America/New_York"


def test_a_stores_definition_is_read_once_for_all_the_transactions_that_need_it(
    acts, sessions, definitions
) -> None:
    from sqlalchemy import event

    from duly.notify.messages import load_record

    # a day's facts and a storm's alerts each run in a transaction of their own
    compiled = definitions.processes["quote-follow-up"].model_dump_json()
    acts.start_instance(start_input("quote-follow-up/Q-7", compiled_json=compiled))
    acts.start_instance(start_input("quote-follow-up/Q-8"))
    reads: list[str] = []

    def count(conn, cursor, statement: str, *args) -> None:
        if re.search(r"\bFROM\s+definitions\b", statement, re.I):
            reads.append(statement)

    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", count)
    try:
        records = []
        for key in ("Q-7", "Q-8", "Q-7"):
            with sessions() as session:
                records.append(load_record(session, f"quote-follow-up/{key}"))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert len(reads) == 1
    assert records[0].process is not None and records[0].process.name == "quote-follow-up"
    assert records[1].process is records[0].process is records[2].process
    assert records[2].zone_name == "America/New_York"


def test_an_instance_whose_version_was_stored_with_other_content_runs_on_the_stored_one(
    acts, sessions, definitions
) -> None:
    from duly.notify.messages import load_record

    # its start warned of the conflict; its messages still read the row of its version
    compiled = definitions.processes["quote-follow-up"].model_dump_json()
    acts.start_instance(start_input("quote-follow-up/Q-7", compiled_json=compiled))
    acts.start_instance(start_input("quote-follow-up/Q-8", hash="b" * 64, compiled_json=compiled))
    with sessions() as session:
        record = load_record(session, "quote-follow-up/Q-8")
    assert record.instance is not None and record.instance.hash == "b" * 64
    assert record.process is not None and record.process.name == "quote-follow-up"


def test_an_alert_reads_its_instance_and_each_person_once(acts, sessions, instance) -> None:
    from sqlalchemy import event

    # Its message names the manager three times and the instance twice (its zone, its record):
    # a storm's thousand alerts each read them once, inside the writers' turn. The manager
    # has an email channel, so the message is built.
    acts.open_task(open_input())
    with write_session(sessions) as session:
        session.add(UserChannel(user_id="maria", channel="email", target="maria@example.com"))
    reads: Counter[str] = Counter()

    def count(conn, cursor, statement: str, *args) -> None:
        table = re.match(r"\s*SELECT\b.*?\bFROM\s+(\w+)", statement, re.S | re.I)
        if table:
            reads[table[1]] += 1

    engine = sessions.kw["bind"]
    event.listen(engine, "before_cursor_execute", count)
    try:
        acts.escalate(escalate_input())
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert reads["instances"] == 1
    assert reads["definitions"] == 1
    assert reads["users"] == 2  # the manager and the assignee
    assert reads["tasks"] == 1
    [alert] = rows(sessions, Alert)
    assert alert.recipient == "maria"


def test_escalate_that_cannot_assign_writes_neither_alert_nor_sla_events(
    acts, sessions, instance
) -> None:
    acts.open_task(open_input())
    breach = SlaEvent(clock="step:call-customer", kind="breach", at=DUE, due_at=DUE)
    rung = escalate_input(notify=None, reassign="user:nobody", sla_events=[breach])
    with pytest.raises(ApplicationError):
        acts.escalate(rung)
    assert rows(sessions, SlaEventRow) == []
    assert [a.level for a in rows(sessions, Alert)] == []


def test_failure_alert_twice_alerts_the_team_manager_once(acts, sessions, instance) -> None:
    failure = FailureAlertInput(
        alert_key=f"{instance}/send-summary/1/failure",
        instance_id=instance,
        process="quote-follow-up",
        step="send-summary",
        team="inbound-sales",
        message="Action 'email' of step 'send-summary' failed: connection refused",
        fired_at=T0,
    )
    acts.failure_alert(failure)
    acts.failure_alert(failure)
    [alert] = rows(sessions, Alert)
    assert (alert.recipient, alert.level) == ("maria", "failure")
    assert "connection refused" in alert.message
    assert instance in alert.message


def test_failure_alert_without_a_team_goes_to_the_admins(acts, sessions, instance) -> None:
    acts.failure_alert(
        FailureAlertInput(
            alert_key="k", instance_id=instance, process="p", step="s", message="boom", fired_at=T0
        )
    )
    assert [a.recipient for a in rows(sessions, Alert)] == ["sam"]


# --- fair, durable rotation -------------------------------------------------------------------


def test_round_robin_is_exactly_fair_and_survives_a_new_worker(engine, acts, sessions, instance):
    picks = [acts.open_task(open_input(visit)).assignee for visit in range(1, 16)]
    restarted = ProcessActivities(session_factory(engine), Settings())
    picks += [restarted.open_task(open_input(visit)).assignee for visit in range(16, 31)]
    assert picks[:4] == ["ana", "ben", "chloe", "ana"]
    assert Counter(picks) == {"ana": 10, "ben": 10, "chloe": 10}
    assert rotation_index(sessions) == 30


def test_concurrent_round_robin_gives_every_task_its_own_turn(acts, sessions, instance) -> None:
    picks: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def open_three(thread: int) -> None:
        try:
            barrier.wait()
            for n in range(3):
                visit = 1 + thread * 3 + n
                result = acts.open_task(open_input(visit))
                picks.append(result.assignee)
        except BaseException as exc:  # report in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=open_three, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert Counter(picks) == {"ana": 8, "ben": 8, "chloe": 8}
    assert rotation_index(sessions) == 24  # 24 distinct positions: none taken twice
    assert len({t.id for t in rows(sessions, Task)}) == 24


def test_concurrent_retries_of_one_task_pick_once(acts, sessions, instance) -> None:
    results = []
    barrier = threading.Barrier(6)

    def attempt() -> None:
        barrier.wait()
        results.append(acts.open_task(open_input()))

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6
    assert {r.assignee for r in results} == {"ana"}
    assert len(rows(sessions, Task)) == 1
    assert rotation_index(sessions) == 1


def test_round_robin_skips_people_who_left(acts, sessions, instance) -> None:
    with write_session(sessions) as session:
        session.get_one(User, "ben").active = False
    picks = [acts.open_task(open_input(visit)).assignee for visit in range(1, 5)]
    assert picks == ["ana", "chloe", "ana", "chloe"]


# --- assignment rules -------------------------------------------------------------------------


def test_least_loaded_picks_the_member_with_fewest_open_tasks(acts, sessions, instance) -> None:
    for visit, who in enumerate(["ana", "ana", "ben", "chloe", "chloe", "chloe"], start=1):
        acts.open_task(open_input(visit, assign=f"user:{who}"))
    # closed tasks don't count: chloe is down to one open task, ben has one
    for visit in (5, 6):
        acts.close_task(
            CloseTaskInput(task_id=open_input(visit).task_id, status="completed", closed_at=T0)
        )
    first = acts.open_task(open_input(7, assign="least-loaded:inbound-sales"))
    assert first.assignee == "ben"  # ties with chloe: ben comes first in the team
    second = acts.open_task(open_input(8, assign="least-loaded:inbound-sales"))
    assert second.assignee == "chloe"


def test_owner_gets_the_task_when_they_are_an_active_user(acts, instance) -> None:
    result = acts.open_task(open_input(assign="owner", owner="chloe"))
    assert (result.assignee, result.team) == ("chloe", "inbound-sales")


@pytest.mark.parametrize("owner", [None, "zoe", "ben-left"])
def test_owner_unknown_or_missing_falls_back_to_round_robin(acts, sessions, instance, owner):
    with write_session(sessions) as session:
        session.add(User(id="ben-left", name="Ben Left", active=False))
    result = acts.open_task(open_input(assign="owner", owner=owner))
    assert (result.assignee, result.team) == ("ana", "inbound-sales")
    assert rotation_index(sessions) == 1


def test_owner_unknown_without_a_team_is_an_assignment_error(acts, instance) -> None:
    with pytest.raises(ApplicationError) as caught:
        acts.open_task(open_input(assign="owner", owner="zoe", team=None))
    assert "the owner 'zoe' is not an active user" in assignment_error(caught)


def test_user_rule_assigns_that_user_on_their_own_team(acts, instance) -> None:
    result = acts.open_task(open_input(assign="user:dev"))
    assert (result.assignee, result.team) == ("dev", "support")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("user:zoe", "no active user 'zoe' in org.yaml"),
        ("round-robin:nobody", "no team 'nobody' in org.yaml"),
        ("least-loaded:nobody", "no team 'nobody' in org.yaml"),
        ("first-come", "'first-come' is not an assignment rule"),
    ],
)
def test_unknown_users_and_teams_are_non_retryable_assignment_errors(
    acts, sessions, instance, rule, message
) -> None:
    with pytest.raises(ApplicationError) as caught:
        acts.open_task(open_input(assign=rule))
    assert message in assignment_error(caught)
    assert rows(sessions, Task) == []


# --- escalation -------------------------------------------------------------------------------


def test_breach_alert_reads_as_plain_english_in_the_calendars_zone(acts, sessions, instance):
    acts.open_task(open_input())
    acts.escalate(escalate_input())
    [alert] = rows(sessions, Alert)
    assert alert.message == (
        "Breach: 'Call Ana about quote Q-1' (quote-follow-up) was due 2026-11-20 17:00 EST "
        "and is still open, assigned to ana"
    )


def test_warning_goes_to_the_assignee(acts, sessions, instance) -> None:
    acts.open_task(open_input())
    result = acts.escalate(
        escalate_input(level="warning", notify="assignee", at_percent=75.0, fired_at=T0)
    )
    assert result.notified == ["ana"]
    [alert] = rows(sessions, Alert)
    assert alert.message.startswith("Warning: 'Call Ana about quote Q-1' (quote-follow-up) is due")


@pytest.mark.parametrize(
    ("assign", "notify", "team", "recipient"),
    [
        ("user:dev", "manager", "inbound-sales", "omar"),  # the task's team: support
        ("user:ana", "manager", "inbound-sales", "maria"),
        ("user:ana", "user:sam", "inbound-sales", "sam"),
    ],
)
def test_manager_is_the_manager_of_the_assignees_team(
    acts, instance, assign, notify, team, recipient
) -> None:
    opened = acts.open_task(open_input(assign=assign))
    result = acts.escalate(escalate_input(notify=notify, assignee=opened.assignee, team=team))
    assert result.notified == [recipient]


def test_manager_of_a_process_clock_without_assignee_is_the_teams_manager(acts, instance):
    result = acts.escalate(
        escalate_input(clock="resolution", task_id=None, assignee=None, team="support", title="")
    )
    assert result.notified == ["omar"]


def test_reassign_to_manager_changes_the_assignee_once(acts, sessions, instance) -> None:
    acts.open_task(open_input())
    rung = escalate_input(rung=2, notify=None, reassign="manager", level="escalation")
    first = acts.escalate(rung)
    again = acts.escalate(rung)
    assert first == again
    assert (first.assignee, first.notified) == ("maria", ["maria"])
    [task] = rows(sessions, Task)
    assert task.assignee == "maria"
    [alert] = rows(sessions, Alert)
    assert alert.level == "escalation"
    assert alert.message == (
        "Reassigned: 'Call Ana about quote Q-1' (quote-follow-up) was due 2026-11-20 17:00 EST "
        "and is now assigned to maria (was ana)"
    )


def test_reassign_round_robin_is_idempotent_and_moves_away_from_the_assignee(
    acts, sessions, instance
) -> None:
    acts.open_task(open_input())  # ana; the rotation's next turn is ben's
    with write_session(sessions) as session:
        session.get_one(Rotation, "inbound-sales").next_index = 3  # ana's turn again
    rung = escalate_input(rung=2, notify=None, reassign="round-robin:inbound-sales")
    first = acts.escalate(rung)
    again = acts.escalate(rung)
    assert first.assignee == again.assignee == "ben"
    assert rotation_index(sessions) == 5  # advanced once, past ana
    assert rows(sessions, Task)[0].assignee == "ben"


def test_reassign_leaves_a_closed_task_alone(acts, sessions, instance) -> None:
    acts.open_task(open_input())
    acts.close_task(CloseTaskInput(task_id=open_input().task_id, status="completed", closed_at=T0))
    result = acts.escalate(escalate_input(notify=None, reassign="manager"))
    assert result.assignee == "ana"
    assert rows(sessions, Task)[0].assignee == "ana"
    assert rows(sessions, Alert) == []


# --- actions -----------------------------------------------------------------------------------


def test_set_action_runs_through_the_activity(acts) -> None:
    result = ActivityEnvironment().run(
        acts.run_action,
        RunActionInput(
            action="set",
            instance_id=INSTANCE,
            step="mark",
            visit=1,
            params={"lead.status": "nurture", "lead.score": 3, "flag": True},
            idempotency_key=f"{INSTANCE}/mark/1",
        ),
    )
    assert result.data == {"lead": {"status": "nurture", "score": 3}, "flag": True}
