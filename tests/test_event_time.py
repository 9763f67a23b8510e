"""Clocks on the CRM's clock: events carry when they happened, and work logged in the CRM counts.

On the time-skipping server with the real activities on a fresh SQLite store: a late-delivered
event starts its SLA when it happened, not on receipt; one delivered past its deadline breaches
at once, recorded at the true instant and marked late-arriving; an event a task names in
`completed_by:` completes it, its clock stopped when the work was done.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from sqlmodel import Session, select
from support import definitions_with, poll, store_with_org
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.process import ProcessActivities
from duly.client import TaskRejected, complete_task, send_event
from duly.language import business_time
from duly.language.durations import parse_duration
from duly.language.loader import Definitions, load_definitions
from duly.settings import Settings
from duly.store.models import SlaEventRow, StepFact, StepFactWeek, Task
from duly.store.rollup import week_start
from workflows.contracts import ProcessContract, implementations
from workflows.messages import (
    CompleteTaskInput,
    EventInput,
    InstanceState,
    ProcessResult,
    workflow_of,
)
from workflows.process import ProcessWorkflow
from workflows.sandbox import workflow_runner

LATE_LEAD = """
process: late-lead
title: Call every lead within the hour
version: 1
calendar: us-east
team: inbound-sales
trigger: {event: lead.created, key: "{{ lead.id }}"}
on: {lead.deleted: closed}
clocks:
  response:
    starts: lead.requested-call
    stops: [lead.deleted, done]
    within: 30 minutes
start: route
steps:
  route:
    kind: decision
    branches: [{when: "lead.business", next: business-call}]
    otherwise: call
  call:
    kind: task
    title: "Call {{ lead.id }}"
    assign: owner
    sla:
      within: 1 hour
      escalate:
        - {at: 50%, notify: assignee}
        - {at: 100%, notify: manager}
    completed_by:
      crm.call.logged: reached
      crm.email.logged: {outcome: no-answer, by: "{{ email.owner }}", note: "{{ email.subject }}"}
    outcomes: {reached: done, no-answer: done}
  business-call:
    kind: task
    title: "Call {{ lead.id }} (business hours)"
    assign: owner
    sla: {within: 1 business hour}
    outcomes: {reached: done}
  done: {kind: end}
  closed: {kind: end}
"""


@dataclass
class Engine:
    """A worker with real activities on a fresh SQLite store, on the time-skipping server."""

    env: WorkflowEnvironment
    definitions: Definitions
    sessions: Callable[[], Session]
    task_queue: str

    async def now(self) -> datetime:
        return await self.env.get_current_time()

    async def event(
        self, type: str, data: dict[str, Any], occurred_at: datetime | None = None
    ) -> list[str]:
        """Deliver an event the way the API does (`duly.client.send_event`)."""
        event = EventInput(id=str(uuid.uuid4()), type=type, data=data, occurred_at=occurred_at)
        return await send_event(
            self.env.client, self.definitions, event, task_queue=self.task_queue
        )

    async def lead(
        self, key: str, occurred_at: datetime | None = None, **data: Any
    ) -> WorkflowHandle[Any, ProcessResult]:
        """A `lead.created` event, and the handle of the instance it started (its task open)."""
        data = {"lead": {"id": key, **data}, "owner": "ana"}
        [instance] = await self.event("lead.created", data, occurred_at)
        handle = self.env.client.get_workflow_handle(
            workflow_of(instance, task=False), result_type=ProcessResult
        )
        await self.until(handle, lambda s: s.task is not None, "the task to open")
        return handle

    async def state(self, handle: WorkflowHandle[Any, Any]) -> InstanceState:
        return await handle.query("state", result_type=InstanceState)

    async def until(
        self, handle: WorkflowHandle[Any, Any], check: Callable[[InstanceState], bool], what: str
    ) -> InstanceState:
        async def satisfied() -> InstanceState | None:
            state = await self.state(handle)
            return state if check(state) else None

        return await poll(satisfied, timeout=20, what=what)

    async def complete(self, handle: WorkflowHandle[Any, Any], outcome: str) -> None:
        state = await self.state(handle)
        assert state.task is not None
        await handle.execute_update(
            "complete_task", CompleteTaskInput(task_id=state.task.task_id, outcome=outcome)
        )

    def rows(self, model: Any, instance_id: str) -> list[Any]:
        with self.sessions() as session:
            query = select(model).where(model.instance_id == instance_id)
            return list(session.exec(query).all())

    def fact(self, instance_id: str, step: str) -> StepFact:
        [fact] = [f for f in self.rows(StepFact, instance_id) if f.step == step]
        return fact


@pytest_asyncio.fixture(loop_scope="session")
async def engine(
    time_skipping_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> AsyncIterator[Engine]:
    definitions = load_definitions(definitions_with(tmp_path / "defs", {"late-lead": LATE_LEAD}))
    db, sessions = store_with_org(tmp_path / "duly.db", definitions.org)
    activities = ProcessActivities(sessions, Settings(smtp_port=1))
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with Worker(
            time_skipping_env.client,
            task_queue=task_queue,
            workflows=[ProcessWorkflow],
            activities=implementations([ProcessContract], [activities]),
            activity_executor=executor,
            workflow_runner=workflow_runner(),
        ):
            yield Engine(time_skipping_env, definitions, sessions, task_queue)
    db.dispose()


async def test_a_lead_delivered_50_minutes_late_on_a_1_hour_sla_is_due_10_minutes_after_receipt(
    engine: Engine,
) -> None:
    received = await engine.now()
    occurred = received - timedelta(minutes=50)
    handle = await engine.lead("L-late", occurred)

    state = await engine.state(handle)
    await poll(
        lambda: [e for e in engine.rows(SlaEventRow, state.instance_id) if e.kind == "warning"],
        timeout=20,
        what="the 50% rung recorded",
    )
    state = await engine.state(handle)
    assert state.task is not None and state.task.due_at is not None
    assert state.next_rung is not None and state.next_rung.action == "breach"
    assert state.task.opened_at == occurred
    assert state.task.due_at == occurred + timedelta(hours=1)
    left = state.task.due_at - received
    assert timedelta(minutes=9) < left <= timedelta(minutes=10)
    # the 50% reminder was due 20 minutes before receipt: it ran at once, at its true instant
    [warning] = [e for e in engine.rows(SlaEventRow, state.instance_id) if e.kind == "warning"]
    assert warning.at == occurred + timedelta(minutes=30)
    assert "late-arriving" in warning.detail

    await engine.complete(handle, "reached")
    await handle.result()
    fact = engine.fact(state.instance_id, "call")
    assert fact.opened_at == occurred  # reports count by when it happened
    assert fact.received_at is not None and fact.received_at >= received
    assert fact.sla_met is True and fact.breached_at is None
    assert fact.late_arriving is False


async def test_a_lead_delivered_after_its_deadline_breaches_at_once_at_the_true_instant(
    engine: Engine,
) -> None:
    received = await engine.now()
    occurred = received - timedelta(minutes=90)
    handle = await engine.lead("L-too-late", occurred)
    due = occurred + timedelta(hours=1)

    state = await engine.state(handle)
    rows = await poll(
        lambda: [e for e in engine.rows(SlaEventRow, state.instance_id) if e.kind == "escalation"],
        timeout=20,
        what="the 100% rung recorded",
    )
    state = await engine.state(handle)
    assert state.clocks["step:call"].breached_at == due
    events = {e.kind: e for e in engine.rows(SlaEventRow, state.instance_id)}
    assert rows == [events["escalation"]]
    assert events["breach"].at == due and "late-arriving" in events["breach"].detail
    assert events["escalation"].at == due  # the 100% rung: the manager heard at once

    await engine.complete(handle, "reached")
    await handle.result()
    fact = engine.fact(state.instance_id, "call")
    assert fact.opened_at == occurred
    assert fact.breached_at == due
    assert fact.sla_met is False
    assert fact.late_arriving is True
    assert fact.received_at is not None and fact.received_at >= received


async def test_a_business_hour_sla_counts_business_time_from_when_the_event_happened(
    engine: Engine,
) -> None:
    received = await engine.now()
    occurred = received - timedelta(minutes=50)
    handle = await engine.lead("L-business", occurred, business=True)

    state = await engine.until(handle, lambda s: s.task is not None, "the task")
    assert state.task is not None
    calendar = engine.definitions.processes["late-lead"].calendar
    expected = business_time.add(calendar, occurred, parse_duration("1 business hour"))
    assert state.task.due_at == expected
    await engine.event("lead.deleted", {"lead": {"id": "L-business"}})
    await handle.result()


async def test_an_event_without_occurred_at_starts_the_clock_on_receipt(engine: Engine) -> None:
    received = await engine.now()
    handle = await engine.lead("L-now")

    state = await engine.state(handle)
    assert state.task is not None and state.task.due_at is not None
    assert state.task.opened_at >= received
    assert state.task.due_at == state.task.opened_at + timedelta(hours=1)
    await engine.complete(handle, "reached")
    await handle.result()
    fact = engine.fact(state.instance_id, "call")
    assert fact.received_at == fact.opened_at
    assert fact.late_arriving is False


async def test_a_clock_an_event_starts_counts_from_when_that_event_happened(
    engine: Engine,
) -> None:
    handle = await engine.lead("L-clock")
    requested = await engine.now() - timedelta(minutes=20)
    await engine.event("lead.requested-call", {"lead": {"id": "L-clock"}}, requested)

    state = await engine.until(handle, lambda s: "response" in s.clocks, "the response clock")
    clock = state.clocks["response"]
    assert clock.started_at == requested
    assert clock.due_at == requested + timedelta(minutes=30)
    await engine.complete(handle, "reached")
    await handle.result()


async def test_a_call_logged_in_the_crm_completes_the_task_when_it_was_made(
    engine: Engine,
) -> None:
    handle = await engine.lead("L-logged")
    opened = (await engine.state(handle)).task
    assert opened is not None
    await engine.env.sleep(timedelta(minutes=20))
    called = opened.opened_at + timedelta(minutes=15)

    await engine.event(
        "crm.call.logged", {"lead": {"id": "L-logged"}, "by": "ben"}, occurred_at=called
    )
    result = await handle.result()

    assert result.result == "done"
    [task] = engine.rows(Task, opened.task_id.rsplit("/", 2)[0])
    assert (task.status, task.outcome, task.closed_by) == ("completed", "reached", "ben")
    assert task.closed_at == called
    fact = engine.fact(task.instance_id, "call")
    assert fact.closed_at == called
    assert fact.sla_met is True
    assert fact.business_seconds is not None


async def test_a_rep_cannot_complete_a_task_the_crm_already_completed(engine: Engine) -> None:
    handle = await engine.lead("L-twice")
    state = await engine.state(handle)
    assert state.task is not None
    await engine.event(
        "crm.email.logged",
        {"lead": {"id": "L-twice"}, "email": {"owner": "ana", "subject": "Left a message"}},
    )
    await handle.result()
    with pytest.raises(TaskRejected) as rejected:
        await complete_task(engine.env.client, state.task.task_id, "reached", by="ana")
    assert rejected.value.stale
    [task] = engine.rows(Task, state.instance_id)
    assert (task.outcome, task.closed_by, task.note) == ("no-answer", "ana", "Left a message")


async def test_work_logged_before_the_deadline_but_delivered_after_it_meets_the_sla(
    engine: Engine,
) -> None:
    handle = await engine.lead("L-slow-webhook")
    opened = (await engine.state(handle)).task
    assert opened is not None
    await engine.env.sleep(timedelta(minutes=70))  # the breach fires at 60 minutes
    await engine.until(
        handle, lambda s: s.clocks["step:call"].breached_at is not None, "the breach"
    )
    called = opened.opened_at + timedelta(minutes=55)
    await engine.event(
        "crm.call.logged", {"lead": {"id": "L-slow-webhook"}, "by": "ana"}, occurred_at=called
    )
    await handle.result()

    fact = engine.fact(opened.task_id.rsplit("/", 2)[0], "call")
    assert fact.closed_at == called
    assert fact.sla_met is True and fact.breached_at is None


async def test_a_lead_from_last_week_delivered_today_counts_in_last_weeks_report(
    engine: Engine,
) -> None:
    received = await engine.now()
    occurred = received - timedelta(days=8)
    handle = await engine.lead("L-last-week", occurred)
    state = await engine.state(handle)
    await engine.complete(handle, "reached")
    await handle.result()

    zone = ZoneInfo("America/New_York")  # us-east, the process's calendar
    with engine.sessions() as session:
        weeks = session.exec(
            select(StepFactWeek).where(
                StepFactWeek.process == "late-lead", StepFactWeek.step == "call"
            )
        ).all()
    fact = engine.fact(state.instance_id, "call")
    assert fact.opened_at == occurred and fact.late_arriving is True
    assert week_start(occurred, zone) != week_start(received, zone)
    assert {w.week_start for w in weeks} == {week_start(occurred, zone)}
