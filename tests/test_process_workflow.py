"""ProcessWorkflow on the time-skipping server, with the real activities on a real SQLite store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
from sqlmodel import Session, select
from support import definitions_with, store_with_org
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.messages import OpenTaskInput, StartInstanceInput
from activities.process import ProcessActivities
from duly.client import AlreadyRunning, start_instance
from duly.language import business_time
from duly.language.business_time import BusinessCalendar
from duly.language.durations import parse_duration
from duly.language.loader import Definitions, load_definitions
from duly.settings import Settings
from duly.store.crud import VersionConflicts, publish_definitions
from duly.store.db import create_all, make_engine, session_factory, write_session
from duly.store.models import Alert, Definition, Instance, SlaEventRow, StepFact, Task
from workflows.contracts import ProcessContract, implementations
from workflows.interpreter import EVERY_CHANGE_AT_START
from workflows.messages import (
    CompleteTaskInput,
    EventInput,
    InstanceState,
    ProcessInput,
    ProcessResult,
    workflow_of,
)
from workflows.process import ProcessWorkflow
from workflows.sandbox import workflow_runner

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")


@dataclass
class Engine:
    """A worker with real activities on a fresh SQLite store, on the time-skipping server."""

    env: WorkflowEnvironment
    definitions: Definitions
    sessions: Callable[[], Session]
    task_queue: str
    inbox: Any

    async def start(self, process: str, data: dict[str, Any]) -> WorkflowHandle[Any, Any]:
        instance = await start_instance(
            self.env.client, self.definitions, process, data, task_queue=self.task_queue
        )
        workflow = workflow_of(instance, task=False)
        handle = self.env.client.get_workflow_handle(workflow, result_type=ProcessResult)
        await self.until(handle, lambda s: s.step is not None)
        return handle

    async def state(self, handle: WorkflowHandle[Any, Any]) -> InstanceState:
        return await handle.query("state", result_type=InstanceState)

    async def until(
        self, handle: WorkflowHandle[Any, Any], check: Callable[[InstanceState], bool]
    ) -> InstanceState:
        """Poll the query until the state satisfies check (a minute at most, in real time).

        A query that reaches a run in the instant it continues as new is not answered by that
        run (the time-skipping server lets it time out), so a query that times out is asked
        again, of the instance's current run, like any state that is not there yet.
        """
        deadline = asyncio.get_running_loop().time() + 60
        state: InstanceState | None = None
        while asyncio.get_running_loop().time() < deadline:
            try:
                state = await handle.query(
                    "state", result_type=InstanceState, rpc_timeout=timedelta(seconds=5)
                )
            except RPCError as error:
                # the SDK's client gives up as CANCELLED "Timeout expired", the server as
                # DEADLINE_EXCEEDED
                if error.status not in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED):
                    raise
            else:
                if check(state):
                    return state
            await asyncio.sleep(0.05)
        raise AssertionError(f"state never satisfied the check: {state}")

    async def sleep_past_wait(self, handle: WorkflowHandle[Any, Any], step: str) -> None:
        """Let the time-skipping server's clock run past the wake instant of a wait step.

        Tests run on today's date, so a "1 business day" wait may span a weekend or the
        holidays: sleep to the instant the instance says, not a fixed number of days.
        """
        state = await self.until(handle, lambda s: s.step == step and s.wake_at is not None)
        assert state.wake_at is not None
        now = await self.env.get_current_time()
        await self.env.sleep(max(state.wake_at - now, timedelta(0)) + timedelta(minutes=1))

    async def open_task(self, handle: WorkflowHandle[Any, Any], step: str) -> InstanceState:
        return await self.until(handle, lambda s: s.task is not None and s.task.step == step)

    async def complete(
        self, handle: WorkflowHandle[Any, Any], step: str, outcome: str, **fields: Any
    ) -> None:
        state = await self.open_task(handle, step)
        assert state.task is not None
        await handle.execute_update(
            "complete_task",
            CompleteTaskInput(task_id=state.task.task_id, outcome=outcome, fields=fields),
        )

    async def end(self, handle: WorkflowHandle[Any, Any], event: str) -> ProcessResult:
        """End an instance through one of its `on:` events and wait for it to finish.

        Tests end instances this way rather than by terminating them: the time-skipping server
        keeps time locked after a run is terminated with an activity in flight.
        """
        await handle.signal("event", EventInput(id=f"end-{uuid.uuid4()}", type=event, data={}))
        result: ProcessResult = await handle.result()
        return result

    async def sleep_until(self, moment: datetime) -> None:
        now = await self.env.get_current_time()
        await self.env.sleep(moment - now)

    def rows(self, model: Any, instance_id: str) -> list[Any]:
        with self.sessions() as session:
            query = select(model).where(model.instance_id == instance_id)
            return list(session.exec(query).all())


@contextlib.asynccontextmanager
async def running_engine(
    env: WorkflowEnvironment,
    definitions: Definitions,
    task_queue: str,
    tmp_path: Path,
    smtp: tuple[Settings, Any],
) -> AsyncIterator[Engine]:
    """A worker with the real activities on a fresh SQLite store, polling `task_queue` of `env`."""
    settings, inbox = smtp
    db, sessions = store_with_org(tmp_path / "duly.db", definitions.org)
    activities = ProcessActivities(sessions, settings)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[ProcessWorkflow],
            activities=implementations([ProcessContract], [activities]),
            activity_executor=executor,
            workflow_runner=workflow_runner(),
        ):
            yield Engine(env, definitions, sessions, task_queue, inbox)
    db.dispose()


@pytest_asyncio.fixture(loop_scope="session")
async def engine(
    time_skipping_env: WorkflowEnvironment,
    definitions: Definitions,
    task_queue: str,
    tmp_path: Path,
    smtp: tuple[Settings, Any],
) -> AsyncIterator[Engine]:
    async with running_engine(time_skipping_env, definitions, task_queue, tmp_path, smtp) as e:
        yield e


def quote(number: str, amount: int = 12_000, owner: str = "ana") -> dict[str, Any]:
    return {
        "quote": {"id": number, "number": number, "amount": amount},
        "contact": {"name": "Lee Park", "email": "lee@example.com"},
        "owner": owner,
    }


def local(moment: datetime, zone: ZoneInfo = NEW_YORK) -> datetime:
    return moment.astimezone(zone)


def ordinary(calendar: BusinessCalendar, day: date) -> bool:
    """A weekday with the calendar's usual hours: no holiday, no half day."""
    return (
        day.weekday() < 5 and day not in calendar.closed_dates and day not in calendar.special_hours
    )


async def next_week(
    engine: Engine, process: str, hour: int, *, zone: ZoneInfo = NEW_YORK
) -> datetime:
    """Monday `hour`:00 of the next week whose five weekdays are all ordinary working days.

    The time-skipping server's clock only moves forward, so each test picks its dates relative to
    it rather than fixed ones.
    """
    calendar = engine.definitions.processes[process].calendar
    day = local(await engine.env.get_current_time(), zone).date() + timedelta(days=1)
    while not (
        day.weekday() == 0 and all(ordinary(calendar, day + timedelta(d)) for d in range(5))
    ):
        day += timedelta(days=1)
    return datetime.combine(day, time(hour), tzinfo=zone)


async def quote_called_on_monday(
    engine: Engine,
) -> tuple[datetime, WorkflowHandle[Any, Any], InstanceState]:
    """A quote-follow-up started at 10:00 of an ordinary week's Monday, its call task open."""
    monday = await next_week(engine, "quote-follow-up", 10)
    await engine.sleep_until(monday)
    handle = await engine.start("quote-follow-up", quote(f"Q-{uuid.uuid4().hex[:6]}"))
    return monday, handle, await engine.open_task(handle, "call-customer")


async def friday_before_a_monday_holiday(engine: Engine) -> datetime:
    """Friday 15:00 (New York) before the next Monday public holiday."""
    calendar = engine.definitions.processes["quote-follow-up"].calendar
    day = local(await engine.env.get_current_time()).date() + timedelta(days=1)
    while not (
        day.weekday() == 4
        and ordinary(calendar, day)
        and day + timedelta(3) in calendar.closed_dates
        and all(ordinary(calendar, day + timedelta(d)) for d in (4, 5))
    ):
        day += timedelta(days=1)
    return datetime.combine(day, time(15), tzinfo=NEW_YORK)


async def test_a_quote_sent_friday_afternoon_before_a_holiday_breaches_at_the_business_instant(
    engine: Engine,
) -> None:
    friday = await friday_before_a_monday_holiday(engine)
    await engine.sleep_until(friday)
    handle = await engine.start("quote-follow-up", quote(f"Q-{uuid.uuid4().hex[:6]}"))
    state = await engine.open_task(handle, "call-customer")
    assert state.task is not None and state.task.due_at is not None
    calendar = engine.definitions.processes["quote-follow-up"].calendar
    opened = state.task.opened_at
    due = state.task.due_at
    assert due == business_time.add(calendar, opened, parse_duration("2 business days"))
    # the holiday is skipped: Tuesday is day one, Wednesday day two, same time of day
    assert (local(due).date(), local(due).hour) == (friday.date() + timedelta(days=5), 15)

    await engine.sleep_until(due + timedelta(seconds=5))
    state = await engine.state(handle)
    clock = state.clocks["step:call-customer"]
    assert clock.breached_at == due
    breach = next(e for e in state.sla_events if e.kind == "breach")
    assert timedelta(0) <= breach.at - due < timedelta(seconds=2)
    await engine.end(handle, "quote.rejected")


async def test_the_ladder_fires_each_rung_once_in_order_and_stops_when_the_task_is_done(
    engine: Engine,
) -> None:
    monday, handle, state = await quote_called_on_monday(engine)
    assert state.task is not None and state.task.assignee == "ana"
    instance = state.instance_id

    # 75% of 16 business hours = Tuesday 14:00; 100% = Wednesday 10:00; 150% = Thursday 10:00
    await engine.sleep_until(monday + timedelta(days=3, seconds=30))
    state = await engine.until(handle, lambda s: s.task is not None and s.task.assignee == "maria")
    alerts = sorted(engine.rows(Alert, instance), key=lambda a: a.created_at)
    assert [(a.level, a.recipient) for a in alerts] == [
        ("warning", "ana"),
        ("breach", "maria"),
        ("escalation", "maria"),
    ]
    assert [local(a.created_at).strftime("%a %H:%M") for a in alerts] == [
        "Tue 14:00",
        "Wed 10:00",
        "Thu 10:00",
    ]
    task = engine.rows(Task, instance)[0]
    assert task.assignee == "maria"

    await engine.complete(handle, "call-customer", "lost")
    assert (await handle.result()).result == "lost"
    await engine.sleep_until(monday + timedelta(days=14))
    assert len(engine.rows(Alert, instance)) == 3  # nothing after completion
    fact = next(f for f in engine.rows(StepFact, instance) if f.step == "call-customer")
    # the breach is ana's, who held the task at Wednesday 10:00; maria only took it over late
    assert (fact.sla_met, fact.highest_rung, fact.assignee) == (False, 3, "ana")
    assert fact.final_assignee == "maria"
    assert local(fact.breached_at).strftime("%a %H:%M") == "Wed 10:00"
    # every change was decided at the start: no marker, nor its search-attribute upsert, in
    # the middle of a warning's, a breach's or a reassignment's workflow task
    assert await patch_markers(handle) == [(EVERY_CHANGE_AT_START, 0)]


async def patch_markers(handle: WorkflowHandle[Any, Any]) -> list[tuple[str, int]]:
    """Each patch marker of an instance's history, and how many workflow tasks came before it
    (its own excluded), with the search-attribute upserts that go with it."""
    markers: list[tuple[str, int]] = []
    upserts, tasks_completed = 0, 0
    async for event in handle.fetch_history_events():
        if event.HasField("workflow_task_completed_event_attributes"):
            tasks_completed += 1
        elif event.HasField("marker_recorded_event_attributes"):
            data = event.marker_recorded_event_attributes.details["patch-data"].payloads[0].data
            markers.append((json.loads(data)["id"], tasks_completed - 1))
        elif event.HasField("upsert_workflow_search_attributes_event_attributes"):
            upserts += 1
    assert upserts == len(markers)
    return markers


async def scheduled_activities(
    handle: WorkflowHandle[Any, Any], after: datetime | None = None
) -> list[str]:
    """The activities an instance scheduled: all, or those after the first timer that fired at
    or after `after`."""
    names: list[str] = []
    fired, since = after is None, after or datetime.min.replace(tzinfo=UTC)
    async for event in handle.fetch_history_events():
        if event.HasField("timer_fired_event_attributes"):
            fired = fired or event.event_time.ToDatetime(tzinfo=UTC) >= since
        elif fired and event.HasField("activity_task_scheduled_event_attributes"):
            names.append(event.activity_task_scheduled_event_attributes.activity_type.name)
    return names


async def test_a_breach_alert_carries_the_breach_into_the_audit_in_one_activity(
    engine: Engine,
) -> None:
    monday, handle, state = await quote_called_on_monday(engine)
    assert state.task is not None and state.task.due_at is not None
    due = state.task.due_at  # the breach, and the 100% rung that tells maria, on one instant
    await engine.sleep_until(due + timedelta(seconds=30))
    state = await engine.until(handle, lambda s: s.next_rung is not None and s.next_rung.at > due)
    # the rung's escalation is the one activity: it writes both SLA events with the alert, so
    # the alert does not wait for the breach's own audit write, nor is there a second write
    assert await scheduled_activities(handle, due) == [ProcessContract.escalate.name]
    with engine.sessions() as session:
        rows = session.exec(
            select(SlaEventRow).where(SlaEventRow.instance_id == state.instance_id)
        ).all()
    at_due = sorted(
        (r.seq, r.kind) for r in rows if timedelta(0) <= r.at - due < timedelta(seconds=2)
    )
    assert [kind for _, kind in at_due] == ["breach", "escalation"]
    await engine.end(handle, "quote.rejected")


async def test_completion_before_the_deadline_records_the_sla_met(engine: Engine) -> None:
    await engine.sleep_until(await next_week(engine, "quote-follow-up", 10))
    handle = await engine.start("quote-follow-up", quote(f"Q-{uuid.uuid4().hex[:6]}"))
    instance = (await engine.state(handle)).instance_id
    await engine.env.sleep(timedelta(hours=3))
    await engine.complete(handle, "call-customer", "reached")
    result = await handle.result()
    assert result.result == "won"  # 12,000 is under the manager-review threshold
    (summary,) = engine.inbox.envelopes
    assert summary.rcpt_tos == ["lee@example.com"]
    facts = {f.step: f for f in engine.rows(StepFact, instance)}
    assert facts["call-customer"].sla_met is True
    assert facts["call-customer"].breached_at is None
    assert facts["call-customer"].outcome == "reached"
    assert facts["check-size"].outcome == "otherwise"
    assert [a.level for a in engine.rows(Alert, instance)] == []
    kinds = [e.kind for e in engine.rows(SlaEventRow, instance)]
    assert kinds == ["start", "stop"]


async def test_a_step_writes_its_close_fact_and_audit_with_the_next_activity(
    engine: Engine,
) -> None:
    handle = await engine.start("quote-follow-up", quote(f"Q-{uuid.uuid4().hex[:6]}"))
    instance = (await engine.state(handle)).instance_id
    await engine.complete(handle, "call-customer", "reached")
    await handle.result()
    scheduled = await scheduled_activities(handle)
    # the instance's start rides on the first open_task (sent twice here: the engine's store
    # has no published definition, so the second carries its content); the call's close, fact
    # and clock stop ride on the email's run_action, written before it sends; the email's,
    # check-size's and won's facts ride on finish_instance
    contract = ProcessContract
    assert scheduled == [
        contract.open_task.name,
        contract.open_task.name,
        contract.run_action.name,
        contract.finish_instance.name,
    ]
    [task] = engine.rows(Task, instance)
    assert (task.status, task.outcome) == ("completed", "reached")
    facts = [(f.step, f.outcome) for f in engine.rows(StepFact, instance)]
    assert sorted(facts) == [
        ("call-customer", "reached"),
        ("check-size", "otherwise"),
        ("send-summary", "done"),
        ("won", "won"),
    ]
    assert [e.kind for e in engine.rows(SlaEventRow, instance)] == ["start", "stop"]


async def start_process(
    engine: Engine, process: str, number: str, **input: Any
) -> WorkflowHandle[Any, ProcessResult]:
    """Start `process` of the engine's definitions on a quote numbered `number`, by hand."""
    return await engine.env.client.start_workflow(
        ProcessWorkflow.run,
        ProcessInput(
            definition=engine.definitions.processes[process],
            business_key=number,
            data=quote(number),
            **input,
        ),
        id=f"{process}/{number}",
        task_queue=engine.task_queue,
    )


# Two `set` actions: one writes a nested value, the other names `quote` both as a value and as a
# map, which no instance data can hold
SETS = """\
process: sets
title: Set values on the instance
version: 1
calendar: us-east
team: inbound-sales
trigger: {event: sets.requested, key: "{{ quote.number }}"}
start: mark
steps:
  mark:
    kind: action
    do: set
    with: {quote.status: "called about {{ quote.number }}"}
    next: clash
  clash:
    kind: action
    do: set
    with: {quote: flat, quote.status: nested}
    next: clashed
    on_error: marked
  clashed: {kind: end, result: clashed}
  marked: {kind: end, result: marked}
"""


async def test_a_set_runs_in_the_workflow_and_a_clash_takes_its_on_error(
    time_skipping_env: WorkflowEnvironment,
    task_queue: str,
    tmp_path: Path,
    smtp: tuple[Settings, Any],
) -> None:
    definitions = load_definitions(definitions_with(tmp_path / "definitions", {"sets": SETS}))
    number = f"Q-{uuid.uuid4().hex[:6]}"
    async with running_engine(time_skipping_env, definitions, task_queue, tmp_path, smtp) as e:
        handle = await start_process(e, "sets", number)
        result = await handle.result()
        state = await handle.query("state", result_type=InstanceState)
        scheduled = await scheduled_activities(handle)
        facts = sorted((f.step, f.outcome) for f in e.rows(StepFact, state.instance_id))
    assert result.result == "marked"
    assert result.data["quote"]["status"] == f"called about {number}"
    # nothing reached outside the store: the facts and the start ride on finish_instance
    # (twice: the store here has no published definition, so the second carries it)
    assert scheduled == [ProcessContract.finish_instance.name] * 2
    assert facts == [("clash", "error"), ("mark", "done"), ("marked", "marked")]
    [failed] = [h for h in state.history if h.kind == "action-failed"]
    assert failed.step == "clash"
    assert failed.detail == "action 'set': 'quote.status' needs 'quote' to be a map"


async def test_an_on_event_ends_the_instance_from_any_step(engine: Engine) -> None:
    number = f"Q-{uuid.uuid4().hex[:6]}"
    handle = await engine.start("quote-follow-up", quote(number))
    state = await engine.open_task(handle, "call-customer")
    await handle.signal("event", EventInput(id="e1", type="quote.accepted", data={}))
    result = await handle.result()
    assert result.result == "won"
    task = engine.rows(Task, state.instance_id)[0]
    assert (task.status, task.outcome) == ("cancelled", "event:quote.accepted")


async def test_voicemail_waits_a_business_day_and_calls_again(engine: Engine) -> None:
    monday = await next_week(engine, "quote-follow-up", 10)
    await engine.sleep_until(monday)
    handle = await engine.start("quote-follow-up", quote(f"Q-{uuid.uuid4().hex[:6]}"))
    await engine.complete(handle, "call-customer", "voicemail")
    state = await engine.until(handle, lambda s: s.step == "wait-a-day")
    await engine.sleep_until(monday + timedelta(days=1, seconds=5))
    state = await engine.open_task(handle, "call-customer")
    assert state.visits["call-customer"] == 2
    assert state.task is not None and state.task.visit == 2
    await engine.complete(handle, "call-customer", "lost")
    await handle.result()


async def test_a_large_quote_goes_to_manager_review(engine: Engine) -> None:
    handle = await engine.start("quote-follow-up", quote(f"Q-{uuid.uuid4().hex[:6]}", 80_000))
    await engine.complete(handle, "call-customer", "reached")
    state = await engine.open_task(handle, "manager-review")
    assert state.task is not None and state.task.assignee == "maria"
    await engine.complete(handle, "manager-review", "done")
    assert (await handle.result()).result == "won"


async def test_a_loop_past_max_visits_ends_with_loop_limit(engine: Engine) -> None:
    handle = await engine.start("quote-follow-up", quote(f"Q-{uuid.uuid4().hex[:6]}"))
    for _ in range(10):
        await engine.complete(handle, "call-customer", "voicemail")
        await engine.sleep_past_wait(handle, "wait-a-day")
    result = await handle.result()
    assert result.result == "loop-limit"
    state = await engine.state(handle)
    assert state.visits["call-customer"] == 10


async def test_a_second_start_for_the_same_key_is_refused(engine: Engine) -> None:
    data = quote(f"Q-{uuid.uuid4().hex[:6]}")
    handle = await engine.start("quote-follow-up", data)
    with pytest.raises(AlreadyRunning, match="already has a running instance"):
        await start_instance(
            engine.env.client,
            engine.definitions,
            "quote-follow-up",
            data,
            task_queue=engine.task_queue,
        )
    await engine.end(handle, "quote.rejected")


async def test_a_wrong_outcome_is_rejected_and_nothing_changes(engine: Engine) -> None:
    handle = await engine.start("quote-follow-up", quote(f"Q-{uuid.uuid4().hex[:6]}"))
    before = await engine.open_task(handle, "call-customer")
    assert before.task is not None
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await handle.execute_update(
            "complete_task", CompleteTaskInput(task_id=before.task.task_id, outcome="maybe")
        )
    assert "'maybe' is not an outcome of step 'call-customer'" in str(failure.value.cause)
    assert "expected one of reached, voicemail, lost" in str(failure.value.cause)
    after = await engine.state(handle)
    assert after.task == before.task and after.history == before.history
    task = engine.rows(Task, before.instance_id)[0]
    assert task.status == "open"
    await engine.end(handle, "quote.rejected")


def case(priority: str = "normal") -> dict[str, Any]:
    return {
        "case": {
            "id": f"C-{uuid.uuid4().hex[:6]}",
            "priority": priority,
            "contact_email": "help@customer.example",
        }
    }


async def test_resolution_clock_pauses_while_waiting_on_the_customer(engine: Engine) -> None:
    # normal priority resolves within 3 business days
    monday = await next_week(engine, "support-case", 10, zone=BERLIN)
    await engine.sleep_until(monday)
    handle = await engine.start("support-case", case())
    await engine.complete(handle, "respond", "answered")
    await engine.complete(handle, "investigate", "need-info")
    state = await engine.until(handle, lambda s: s.step == "waiting-on-customer")
    resolution = state.clocks["resolution"]
    assert resolution.status == "paused" and resolution.due_at is None
    counted = resolution.counted_seconds

    # the customer answers a week later: none of that week counts
    await engine.sleep_until(monday + timedelta(days=7))
    await handle.signal(
        "event", EventInput(id=f"r-{uuid.uuid4()}", type="case.customer_replied", data={})
    )
    state = await engine.open_task(handle, "investigate")
    resolution = state.clocks["resolution"]
    assert resolution.status == "running" and resolution.counted_seconds == counted
    calendar = engine.definitions.processes["support-case"].calendar
    assert resolution.running_since is not None and resolution.due_at is not None
    expected = business_time.add_business_seconds(
        calendar, resolution.running_since, resolution.total_seconds - counted
    )
    assert resolution.due_at == expected
    await engine.sleep_until(expected + timedelta(seconds=5))
    state = await engine.state(handle)
    assert state.clocks["resolution"].breached_at == expected
    kinds = [e.kind for e in state.sla_events if e.clock == "resolution"]
    assert kinds[:5] == ["start", "pause", "resume", "warning", "breach"]
    await engine.end(handle, "case.closed")


async def test_raising_the_priority_moves_the_due_time_earlier(engine: Engine) -> None:
    await engine.sleep_until(await next_week(engine, "support-case", 10, zone=BERLIN))
    handle = await engine.start("support-case", case("normal"))
    state = await engine.open_task(handle, "respond")
    before = state.clocks["resolution"].due_at
    assert before is not None
    await engine.env.sleep(timedelta(hours=1))
    await handle.signal(
        "event",
        EventInput(
            id=f"p-{uuid.uuid4()}", type="case.updated", data={"case": {"priority": "urgent"}}
        ),
    )
    state = await engine.until(handle, lambda s: s.clocks["resolution"].target == "urgent")
    after = state.clocks["resolution"].due_at
    assert after is not None and after < before
    # urgent is 4 business hours from the 10:00 start, counted before (2.5 h) and after the
    # 12:30-13:30 lunch break (1.5 h): the hour already passed still counts
    assert local(after, BERLIN).strftime("%a %H:%M") == "Mon 15:00"
    assert state.next_rung is not None and state.next_rung.at <= after
    await engine.end(handle, "case.closed")


async def test_an_instance_row_is_written_once_and_closed_with_its_result(engine: Engine) -> None:
    handle = await engine.start("quote-follow-up", quote(f"Q-{uuid.uuid4().hex[:6]}"))
    state = await engine.state(handle)
    await engine.complete(handle, "call-customer", "lost")
    await handle.result()
    with engine.sessions() as session:
        row = session.get(Instance, state.instance_id)
    assert row is not None
    assert (row.status, row.result, row.workflow_id) == ("completed", "lost", handle.id)
    assert row.ended_at is not None and row.ended_at.tzinfo is not None
    assert datetime.now(UTC) - row.started_at < timedelta(days=3650)


async def start_instance_inputs(handle: WorkflowHandle[Any, Any]) -> list[StartInstanceInput]:
    """Each instance start the instance's activities carried, from its history.

    The start rides on the first activity that writes (`StepWrites.start`): `open_task` here.
    """
    sent = []
    async for event in handle.fetch_history_events():
        scheduled = event.activity_task_scheduled_event_attributes
        if scheduled.activity_type.name == ProcessContract.open_task.name:
            [payload] = scheduled.input.payloads
            writes = OpenTaskInput.model_validate_json(payload.data).writes
            if writes is not None and writes.start is not None:
                sent.append(writes.start)
    return sent


async def test_a_history_carries_a_published_definition_once_and_the_store_keeps_it_whole(
    engine: Engine,
) -> None:
    quote_process = engine.definitions.processes["quote-follow-up"]
    first = await engine.start("quote-follow-up", quote(f"Q-{uuid.uuid4().hex[:6]}"))
    await engine.open_task(first, "call-customer")
    # not published here: told so, the workflow sends the content, and the store keeps it
    unpublished = await start_instance_inputs(first)
    assert [bool(sent.compiled_json) for sent in unpublished] == [False, True]
    with engine.sessions() as session:
        [stored] = session.exec(select(Definition)).all()
    assert stored.compiled_json == quote_process.model_dump_json(by_alias=True)
    assert stored.source == quote_process.source
    # now it is stored (as a publish stores it): the next instance's history leaves it out
    second = await engine.start("quote-follow-up", quote(f"Q-{uuid.uuid4().hex[:6]}"))
    await engine.open_task(second, "call-customer")
    [sent] = await start_instance_inputs(second)
    assert (sent.compiled_json, sent.source) == ("", "")
    with engine.sessions() as session:
        assert session.get(Instance, (await engine.state(second)).instance_id) is not None
    for handle in (first, second):
        await engine.complete(handle, "call-customer", "lost")
        await handle.result()


# A call-back loop whose wait lasts a second of real time: a few visits outgrow a small history
CALL_BACK = """\
process: call-back
title: Call back until the customer answers
version: 1
calendar: us-east
team: inbound-sales
trigger: {event: callback.requested, key: "{{ quote.number }}"}
start: call-customer
steps:
  call-customer:
    kind: task
    title: "Call about quote {{ quote.number }}"
    assign: owner
    outcomes: {voicemail: wait-a-moment, lost: lost}
  wait-a-moment: {kind: wait, for: 1 second, next: call-customer}
  lost: {kind: end, result: lost}
"""


async def test_a_long_instance_continues_as_new_and_keeps_its_state(
    dev_server_env: WorkflowEnvironment,
    task_queue: str,
    tmp_path: Path,
    smtp: tuple[Settings, Any],
) -> None:
    # On the dev server in real time: the time-skipping server keeps its clock locked for good
    # when a query reaches a run in the instant it continues as new (its lock for the query's
    # workflow task is never released), which no real Temporal does.
    definitions = load_definitions(definitions_with(tmp_path / "definitions", {"cb": CALL_BACK}))
    number = f"Q-{uuid.uuid4().hex[:6]}"
    async with running_engine(dev_server_env, definitions, task_queue, tmp_path, smtp) as engine:
        started = await start_process(engine, "call-back", number, history_limit=40)
        # the instance, whichever run is current: queries and updates follow it as it continues
        handle = engine.env.client.get_workflow_handle(started.id, result_type=ProcessResult)
        first = await engine.open_task(handle, "call-customer")
        for visit in range(1, 4):
            await engine.complete(handle, "call-customer", "voicemail")
            await engine.until(handle, lambda s, v=visit: s.visits.get("wait-a-moment") == v)
        state = await engine.until(
            handle, lambda s: s.task is not None and s.visits.get("call-customer") == 4
        )
        description = await handle.describe()
        assert description.run_id != started.result_run_id  # a new run carries on
        assert state.instance_id == first.instance_id
        assert state.visits == {"call-customer": 4, "wait-a-moment": 3}
        assert state.data["quote"]["number"] == number
        await engine.complete(handle, "call-customer", "lost")
        assert (await handle.result()).result == "lost"
        facts = engine.rows(StepFact, first.instance_id)
    assert sorted((f.step, f.visit) for f in facts) == sorted(
        [("call-customer", v) for v in range(1, 5)]
        + [("wait-a-moment", v) for v in range(1, 4)]
        + [("lost", 1)]
    )


def test_a_changed_process_needs_a_new_version(definitions: Definitions, tmp_path: Path) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'duly.db'}")
    create_all(db)
    sessions = session_factory(db)
    quote_v1 = definitions.processes["quote-follow-up"]
    with write_session(sessions) as session:
        publish_definitions(session=session, processes=[quote_v1])
    edited = quote_v1.model_copy(update={"hash": "0" * 64})
    renumbered = quote_v1.model_copy(update={"hash": "1" * 64, "version": 2})
    lead = definitions.processes["lead-follow-up"]
    with pytest.raises(VersionConflicts) as refused, write_session(sessions) as session:
        publish_definitions(session=session, processes=[lead, edited])
    assert str(refused.value) == (
        f"{quote_v1.file}: process quote-follow-up version 1 is already stored with different "
        "content; raise `version:` to publish a change"
    )
    with write_session(sessions) as session:
        publish_definitions(session=session, processes=[quote_v1, renumbered])
    with sessions() as session:
        stored = session.exec(select(Definition.process, Definition.version)).all()
    # the refused publish wrote nothing, not even the unrelated lead-follow-up
    assert sorted(stored) == [("quote-follow-up", 1), ("quote-follow-up", 2)]


async def test_a_running_instance_keeps_its_version_when_a_new_one_is_published(
    engine: Engine,
) -> None:
    handle = await engine.start("quote-follow-up", quote(f"Q-{uuid.uuid4().hex[:6]}"))
    before = await engine.open_task(handle, "call-customer")
    v1 = engine.definitions.processes["quote-follow-up"]
    spec = v1.spec.model_copy(update={"version": 2})
    v2 = v1.model_copy(update={"version": 2, "hash": "2" * 64, "spec": spec})
    newer = Definitions(processes={"quote-follow-up": v2}, org=engine.definitions.org)
    fresh = await start_instance(
        engine.env.client,
        newer,
        "quote-follow-up",
        quote(f"Q-{uuid.uuid4().hex[:6]}"),
        task_queue=engine.task_queue,
    )
    latest = engine.env.client.get_workflow_handle(workflow_of(fresh, task=False))
    assert (await engine.state(latest)).version == 2
    assert (await engine.state(handle)).version == before.version == 1
    await engine.end(handle, "quote.rejected")
    await engine.end(latest, "quote.rejected")
