"""Rungs with several actions, notify targets, task fields, triggers, `last_task` and stages.

On the time-skipping server with the real activities on a real SQLite store: a one-hour SLA
crossed by `env.sleep`, the rung's actions run in order, and what they write read back.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import pytest_asyncio
import yaml
from sqlmodel import Session, select
from support import definitions_with, store_with_org
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.process import ProcessActivities
from duly.cli.work import typed_fields
from duly.client import send_event
from duly.language.loader import Definitions, load_definitions
from duly.reports.stages import record_stages, stage_funnel
from duly.settings import Settings
from duly.store.models import Alert, Delivery, StepFact
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

NEW_YORK = ZoneInfo("America/New_York")

LEAD = """
process: drill-lead
title: Call web leads within the hour
version: 1
calendar: us-east
team: inbound-sales
trigger:
  events: [lead.created, lead.reopened]
  key: "{{ lead.id }}"
  when: "lead.source == 'web'"
on: {lead.deleted: done}
start: call
steps:
  call:
    kind: task
    title: "Call {{ lead.id }}"
    assign: owner
    stage: suspect
    sla:
      within: 1 business hour
      escalate:
        - at: 100%
          do:
            - {notify: manager}
            - {notify: skip-level}
            - {notify: "team:support"}
            - {notify: "manager-of:support"}
            - {notify: "role:admin"}
            - {reassign: "user:ben"}
            - {notify: assignee}
            - {set: {lead.escalated: "yes"}}
    fields:
      budget: {type: number, required: [qualified]}
      timeline: {type: choice, options: [soon, later], default: later}
      reason: {type: text, required: false, help: Why the lead is lost}
    outcomes: {qualified: tell, lost: tell}
    outcome_stages: {qualified: qualified}
  tell:
    kind: action
    do: set
    with:
      said: >-
        {{ last_task.outcome }} by {{ last_task.by }}, sla {{ last_task.sla }},
        {{ (last_task.business_seconds / 60) | round | int }} min,
        timeline {{ last_task.fields.timeline }}
    next: check
  check:
    kind: decision
    branches:
      - {when: "last_task.sla == 'breached'", next: late}
    otherwise: done
  late: {kind: end, result: late}
  done: {kind: end, result: done}
"""

QUOTE = """
process: drill-quote
title: Quote a qualified lead
version: 1
calendar: us-east
team: inbound-sales
trigger: {event: lead.quoted, key: "{{ lead.id }}"}
start: send-quote
steps:
  send-quote:
    kind: task
    title: "Quote {{ lead.id }}"
    assign: owner
    stage: quote
    outcomes: {won: won, lost: lost}
    outcome_stages: {won: won}
  won: {kind: end}
  lost: {kind: end}
"""


@dataclass
class Drill:
    env: WorkflowEnvironment
    definitions: Definitions
    sessions: Callable[[], Session]
    task_queue: str

    async def send(self, type_: str, data: dict[str, Any]) -> list[str]:
        event = EventInput(id=str(uuid.uuid4()), type=type_, data=data)
        return await send_event(
            self.env.client, self.definitions, event, task_queue=self.task_queue
        )

    def handle(self, instance: str) -> WorkflowHandle[Any, Any]:
        workflow = workflow_of(instance, task=False)
        return self.env.client.get_workflow_handle(workflow, result_type=ProcessResult)

    async def until(
        self, handle: WorkflowHandle[Any, Any], check: Callable[[InstanceState], bool]
    ) -> InstanceState:
        deadline = asyncio.get_running_loop().time() + 60
        state: InstanceState | None = None
        while asyncio.get_running_loop().time() < deadline:
            state = await handle.query("state", result_type=InstanceState)
            if check(state):
                return state
            await asyncio.sleep(0.05)
        raise AssertionError(f"state never satisfied the check: {state}")

    async def sleep_until(self, moment: datetime) -> None:
        await self.env.sleep(moment - await self.env.get_current_time())

    def rows(self, model: Any, instance_id: str) -> list[Any]:
        with self.sessions() as session:
            return list(session.exec(select(model).where(model.instance_id == instance_id)))


def org_with_a_head_of_sales(folder: Path) -> None:
    """Maria (manager of inbound-sales) is a member of a team Sam manages: her skip level."""
    org = yaml.safe_load((folder / "org.yaml").read_text(encoding="utf-8"))
    org["teams"]["leadership"] = {"manager": "sam", "members": ["maria", "omar"]}
    (folder / "org.yaml").write_text(yaml.safe_dump(org), encoding="utf-8")


@pytest_asyncio.fixture(loop_scope="session")
async def drill(
    time_skipping_env: WorkflowEnvironment,
    task_queue: str,
    tmp_path: Path,
    smtp: tuple[Settings, Any],
) -> AsyncIterator[Drill]:
    folder = definitions_with(tmp_path / "definitions", {"drill-lead": LEAD, "drill-quote": QUOTE})
    org_with_a_head_of_sales(folder)
    definitions = load_definitions(folder)
    settings, _ = smtp
    db, sessions = store_with_org(tmp_path / "duly.db", definitions.org)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with Worker(
            time_skipping_env.client,
            task_queue=task_queue,
            workflows=[ProcessWorkflow],
            activities=implementations([ProcessContract], [ProcessActivities(sessions, settings)]),
            activity_executor=executor,
            workflow_runner=workflow_runner(),
        ):
            yield Drill(time_skipping_env, definitions, sessions, task_queue)
    db.dispose()


async def next_monday(drill: Drill, hour: int) -> datetime:
    """Monday `hour`:00 of the next week whose weekdays are all ordinary working days."""
    calendar = drill.definitions.processes["drill-lead"].calendar
    day = (await drill.env.get_current_time()).astimezone(NEW_YORK).date() + timedelta(days=1)

    def ordinary(d: date) -> bool:
        return (
            d.weekday() < 5 and d not in calendar.closed_dates and d not in calendar.special_hours
        )

    while not (day.weekday() == 0 and all(ordinary(day + timedelta(n)) for n in range(5))):
        day += timedelta(days=1)
    return datetime.combine(day, time(hour), tzinfo=NEW_YORK)


def lead(key: str, source: str = "web") -> dict[str, Any]:
    return {"lead": {"id": key, "source": source}, "owner": "ana"}


async def test_a_trigger_starts_on_any_of_its_events_only_when_its_condition_holds(
    drill: Drill,
) -> None:
    key = f"L-{uuid.uuid4().hex[:6]}"
    assert await drill.send("lead.reopened", lead(key, source="phone")) == []
    started = await drill.send("lead.reopened", lead(key))
    assert [s.split("/")[:2] for s in started] == [["drill-lead", key]]
    handle = drill.handle(started[0])
    await drill.until(handle, lambda s: s.task is not None)
    # a later event of a trigger type that does not start one still reaches the live instance
    assert await drill.send("lead.deleted", lead(key)) == started
    assert (await handle.result()).result == "done"


async def test_a_rung_runs_its_actions_in_order_and_the_next_step_sees_the_late_task(
    drill: Drill,
) -> None:
    monday = await next_monday(drill, 10)
    await drill.sleep_until(monday)
    key = f"L-{uuid.uuid4().hex[:6]}"
    handle = drill.handle((await drill.send("lead.created", lead(key)))[0])
    state = await drill.until(handle, lambda s: s.task is not None)
    assert state.task is not None and state.task.assignee == "ana"
    instance = state.instance_id

    # 100% of one business hour: Monday 11:00, every action of the rung, in order
    await drill.sleep_until(monday + timedelta(hours=1, seconds=30))
    state = await drill.until(handle, lambda s: s.data.get("lead", {}).get("escalated") == "yes")
    assert state.task is not None and state.task.assignee == "ben"
    rows = drill.rows(Alert, instance)
    assert sorted((a.recipient, a.level) for a in rows) == [
        ("ben", "breach"),  # `assignee`, after the reassignment: ben
        ("ben", "escalation"),  # the new holder
        ("dev", "breach"),  # team:support, every member
        ("emma", "breach"),
        ("felix", "breach"),
        ("maria", "breach"),  # the manager
        ("omar", "breach"),  # manager-of:support
        ("sam", "breach"),  # her manager: skip level
        ("sam", "breach"),  # role:admin, a separate action of the rung
    ]
    # the ladder ran in order: ben's breach alert came after the reassignment made him assignee
    assert next(a for a in rows if (a.recipient, a.level) == ("ben", "breach")).resolved_at is None
    with drill.sessions() as session:
        told = session.exec(
            select(Delivery).where(Delivery.user_id == "ana", Delivery.kind == "task.reassigned")
        ).all()
        dev = session.exec(select(Delivery).where(Delivery.user_id == "dev")).one()
    # a later action of the rung still names its rung in what people read
    assert "1 of 1 (notify manager, notify skip-level, notify team:support" in dev.body
    # ana, who lost the task, is told (once per channel), not alerted: nothing asks her to act
    assert [n.channel for n in told] == ["email"]
    assert (
        told[0].subject.startswith("No longer yours: Call ") and "(now with ben)" in told[0].subject
    )

    task_id = state.task.task_id
    # budget is required for `qualified` only; a choice takes one of its options
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            "complete_task", CompleteTaskInput(task_id=task_id, outcome="qualified")
        )
    assert "field 'budget' (number) is required for outcome 'qualified'" in str(refused.value.cause)
    with pytest.raises(WorkflowUpdateFailedError) as refused:
        await handle.execute_update(
            "complete_task",
            CompleteTaskInput(task_id=task_id, outcome="lost", fields={"timeline": "never"}),
        )
    assert "field 'timeline' must be one of soon, later, found 'never'" in str(refused.value.cause)
    await drill.sleep_until(monday + timedelta(hours=2))
    await handle.execute_update(
        "complete_task", CompleteTaskInput(task_id=task_id, outcome="lost", by="ben")
    )
    result: ProcessResult = await handle.result()
    assert result.result == "late"  # the decision read last_task.sla
    assert result.data["said"] == "lost by ben, sla breached, 120 min, timeline later"
    assert result.data["timeline"] == "later"  # the default, merged like a value given
    assert result.data["last_task"]["fields"] == {"timeline": "later"}
    fact = next(f for f in drill.rows(StepFact, instance) if f.step == "call")
    assert fact.stage == "suspect"  # `lost` has no stage of its own: the step's


async def test_stages_give_one_funnel_across_processes_for_a_record(drill: Drill) -> None:
    monday = await next_monday(drill, 10)
    await drill.sleep_until(monday)
    key = f"L-{uuid.uuid4().hex[:6]}"
    handle = drill.handle((await drill.send("lead.created", lead(key)))[0])
    state = await drill.until(handle, lambda s: s.task is not None)
    assert state.task is not None
    await drill.sleep_until(monday + timedelta(minutes=30))
    await handle.execute_update(
        "complete_task",
        CompleteTaskInput(task_id=state.task.task_id, outcome="qualified", fields={"budget": 9000}),
    )
    assert (await handle.result()).data["said"].startswith("qualified by ana, sla met, 30 min")

    # the same lead, quoted by another process two hours later, then won
    await drill.sleep_until(monday + timedelta(hours=2))
    quote = drill.handle((await drill.send("lead.quoted", lead(key)))[0])
    state = await drill.until(quote, lambda s: s.task is not None)
    assert state.task is not None
    await drill.sleep_until(monday + timedelta(hours=5))
    await quote.execute_update(
        "complete_task", CompleteTaskInput(task_id=state.task.task_id, outcome="won")
    )
    await quote.result()

    with drill.sessions() as session:
        journey = record_stages(session, key)
        funnel = stage_funnel(session, drill.definitions.org.stages, since=monday)
    assert [(s.stage, s.process) for s in journey] == [
        ("qualified", "drill-lead"),
        ("won", "drill-quote"),
    ]
    stayed = journey[1].at - journey[0].at
    assert abs(stayed - timedelta(hours=4, minutes=30)) < timedelta(seconds=5)
    rows = {row.stage: row for row in funnel.rows}
    # this test's record: qualified for 4.5 hours, then won (the quote step closed with `won`)
    assert rows["won"].entered >= 1 and rows["won"].in_stage_now >= 1
    assert rows["qualified"].reached >= rows["won"].reached >= 1
    assert rows["suspect"].reached >= rows["qualified"].reached
    assert rows["qualified"].p50_seconds is not None
    assert abs(rows["qualified"].p50_seconds - 4.5 * 3600) < 5


def test_the_cli_takes_a_text_or_choice_field_as_written_and_numbers_as_numbers() -> None:
    kinds = {"timeline": "choice", "code": "text", "budget": "number", "won": "boolean"}
    pairs = ["timeline=2026", "code=007", "budget=25000", "won=true", "extra=5"]
    assert typed_fields(pairs, kinds) == {
        "timeline": "2026",
        "code": "007",
        "budget": 25000,
        "won": True,
        "extra": 5,  # not declared: the workflow refuses it by name
    }


def test_an_email_a_rung_sends_is_pinned_with_the_definition(tmp_path: Path) -> None:
    process = QUOTE.replace("drill-quote", "drill-rung-email").replace(
        "    stage: quote\n",
        "    stage: quote\n"
        "    sla:\n"
        "      within: 1 business day\n"
        "      escalate:\n"
        "        - at: 100%\n"
        "          do:\n"
        "            - {notify: manager}\n"
        "            - {action: email, with: {to: a@example.com, template: quote-summary}}\n",
    )
    folder = definitions_with(tmp_path / "definitions", {"drill-rung-email": process})
    compiled = load_definitions(folder).processes["drill-rung-email"]
    # the worker renders the template from the pinned definition, never from the folder
    assert list(compiled.templates) == ["quote-summary"]
