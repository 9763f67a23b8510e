"""How duly counts (docs/language.md), as the engine writes it: a breach is charged to whoever
held the task when its deadline passed; a task cancelled by an event is not applicable (no
verdict, no duration) unless it was already late; SLA events reach the store promptly."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlmodel import select
from test_process_workflow import Engine, engine, local, quote_called_on_monday

from duly.store.models import SlaEventRow, StepFact
from workflows.messages import EventInput, ReassignTaskInput

__all__ = ["engine"]  # the fixture, shared with test_process_workflow


def call_fact(engine: Engine, instance: str) -> StepFact:
    return next(f for f in engine.rows(StepFact, instance) if f.step == "call-customer")


async def test_a_task_cancelled_by_an_event_before_its_deadline_is_not_applicable(
    engine: Engine,
) -> None:
    monday, handle, state = await quote_called_on_monday(engine)
    await engine.env.sleep(timedelta(minutes=9))
    await handle.signal("event", EventInput(id=f"e-{uuid.uuid4()}", type="quote.accepted"))
    assert (await handle.result()).result == "won"
    fact = call_fact(engine, state.instance_id)
    assert fact.outcome == "event:quote.accepted"
    assert (fact.sla_met, fact.breached_at, fact.business_seconds) == (None, None, None)
    assert fact.due_at is not None  # it had an SLA: not applicable, not "no SLA"
    stop = [e for e in engine.rows(SlaEventRow, state.instance_id) if e.kind == "stop"]
    assert [e.detail for e in stop] == ["not applicable"]


async def test_a_task_cancelled_after_its_deadline_is_breached_without_a_duration(
    engine: Engine,
) -> None:
    monday, handle, state = await quote_called_on_monday(engine)
    # due Wednesday 10:00 (2 business days); the quote is accepted Wednesday 11:00
    await engine.sleep_until(monday + timedelta(days=2, hours=1))
    await handle.signal("event", EventInput(id=f"e-{uuid.uuid4()}", type="quote.accepted"))
    await handle.result()
    fact = call_fact(engine, state.instance_id)
    assert (fact.sla_met, fact.business_seconds, fact.assignee) == (False, None, "ana")
    assert local(fact.breached_at).strftime("%a %H:%M") == "Wed 10:00"


async def test_a_reassignment_before_the_deadline_moves_the_breach_to_the_new_holder(
    engine: Engine,
) -> None:
    monday, handle, state = await quote_called_on_monday(engine)
    assert state.task is not None
    await handle.execute_update(
        "reassign_task", ReassignTaskInput(task_id=state.task.task_id, to="ben", by="maria")
    )
    await engine.sleep_until(monday + timedelta(days=2, hours=2))  # past Wednesday 10:00
    await engine.complete(handle, "call-customer", "lost")
    await handle.result()
    fact = call_fact(engine, state.instance_id)
    assert (fact.sla_met, fact.assignee, fact.final_assignee) == (False, "ben", None)
    assert fact.business_seconds is not None and fact.business_seconds > 0


async def test_a_clocks_start_reaches_the_store_while_its_task_is_open(engine: Engine) -> None:
    monday, handle, state = await quote_called_on_monday(engine)

    def started() -> list[SlaEventRow]:
        with engine.sessions() as session:
            query = select(SlaEventRow).where(
                SlaEventRow.instance_id == state.instance_id, SlaEventRow.kind == "start"
            )
            return list(session.exec(query))

    # no time passes on the server: the row must come from the task's opening alone
    await engine.until(handle, lambda s: s.sla_events_written > 0)
    (start,) = started()
    assert (start.clock, start.step) == ("step:call-customer", "call-customer")
    assert (await engine.state(handle)).task is not None  # still open
    await engine.complete(handle, "call-customer", "lost")
    await handle.result()
