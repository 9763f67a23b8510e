"""SLA work first: with bulk start-ups queued, a breach's workflow task and alert go ahead.

Proved by order, not timing, on the real dev server as `duly up` runs it (one partition per
task queue): with no worker running, bulk instances are started and a live instance's SLA
timer fires; then a worker taking one task at a time starts, and the breach's rung runs before
any bulk instance's first step.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from support import definitions_with, poll, store_with_org
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.process import ProcessActivities
from duly.client import start_instance
from duly.language.loader import Definitions, load_definitions
from duly.settings import Settings
from duly.store.db import SessionFactory
from duly.store.models import Alert, Delivery
from workflows.contracts import ProcessContract, implementations
from workflows.priority import BULK, LIVE_KEY
from workflows.process import ProcessWorkflow
from workflows.sandbox import workflow_runner

pytestmark = pytest.mark.timeout(300)

# A task due two seconds after it opens, whose breach alerts the team's manager
CALL_NOW = """\
process: call-now
title: Call the lead now
version: 1
calendar: us-east
team: inbound-sales
trigger: {event: lead.created, key: "{{ lead.id }}"}
start: call
steps:
  call:
    kind: task
    title: "Call {{ lead.id }}"
    assign: round-robin:inbound-sales
    sla:
      within: 2 seconds
      escalate:
        - {at: 100%, notify: manager}
    outcomes: {done: end}
  end: {kind: end, result: done}
"""
BULK_INSTANCES = 20


@contextlib.asynccontextmanager
async def worker(
    client: Client, sessions: SessionFactory, settings: Settings, queue: str, *, slots: int
) -> AsyncIterator[None]:
    """duly's workflow and activities; nothing cached, so every task goes to the shared queue."""
    with ThreadPoolExecutor(max_workers=slots) as executor:
        async with Worker(
            client,
            task_queue=queue,
            workflows=[ProcessWorkflow],
            activities=implementations([ProcessContract], [ProcessActivities(sessions, settings)]),
            activity_executor=executor,
            workflow_runner=workflow_runner(),
            max_cached_workflows=0,
            max_concurrent_workflow_tasks=slots,
            max_concurrent_activities=slots,
        ):
            yield


async def has_event(handle: WorkflowHandle[Any, Any], event_type: EventType.ValueType) -> bool:
    async for event in handle.fetch_history_events():
        if event.event_type == event_type:
            return True
    return False


async def task_started_after(
    handle: WorkflowHandle[Any, Any], event_type: EventType.ValueType | None = None
) -> datetime:
    """When the server handed out the instance's first workflow task after an event of that
    type (after its start when None)."""
    seen = event_type is None
    async for event in handle.fetch_history_events():
        seen = seen or event.event_type == event_type
        if seen and event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED:
            return event.event_time.ToDatetime(UTC)
    raise AssertionError(f"{handle.id} has no workflow task after {event_type}")


async def priority_key(handle: WorkflowHandle[Any, Any]) -> int:
    """The instance's priority key as the server holds it (0: none set, Temporal's default)."""
    description = await handle.describe()
    return description.raw_description.workflow_execution_info.priority.priority_key


async def test_a_breach_goes_ahead_of_bulk_start_ups_queued_before_it(
    dev_server_env: WorkflowEnvironment,
    tmp_path: Path,
    smtp: tuple[Settings, Any],
) -> None:
    settings, _ = smtp
    definitions: Definitions = load_definitions(
        definitions_with(tmp_path / "definitions", {"call-now": CALL_NOW})
    )
    db, sessions = store_with_org(tmp_path / "duly.db", definitions.org)
    client, queue = dev_server_env.client, f"test-{uuid.uuid4()}"
    run = uuid.uuid4().hex[:6]

    async def start(key: str, **options: Any) -> WorkflowHandle[Any, Any]:
        started = await start_instance(
            client, definitions, "call-now", {"lead": {"id": key}}, task_queue=queue, **options
        )
        return client.get_workflow_handle(started.rsplit("/", 1)[0])

    async with worker(client, sessions, settings, queue, slots=4):
        live = await start(f"live-{run}")
        await poll(
            lambda: has_event(live, EventType.EVENT_TYPE_TIMER_STARTED),
            timeout=60,
            what="the live task's SLA timer to be set",
        )
    # No worker now: bulk start-ups queue, then the live task's SLA timer fires behind them
    bulk = [await start(f"bulk-{run}-{n}", priority=BULK) for n in range(BULK_INSTANCES)]
    await poll(
        lambda: has_event(live, EventType.EVENT_TYPE_TIMER_FIRED),
        timeout=60,
        what="the live task's SLA timer to fire",
    )

    async with worker(client, sessions, settings, queue, slots=1):
        [alert] = await poll(lambda: _rows(sessions, Alert), timeout=60, what="the breach alert")
        await poll(
            lambda: len(_rows(sessions, Delivery)) == 2 + BULK_INSTANCES,
            timeout=60,
            what="the alert's and every assignment's notification to be queued",
        )

        async def all_settled() -> bool:
            return {await priority_key(handle) for handle in bulk} == {LIVE_KEY}

        await poll(all_settled, timeout=60, what="every bulk instance to settle at the live key")
        live_key = await priority_key(live)
    db.dispose()

    # the server handed the fired timer's task out before any bulk start-up queued before it
    breach_task = await task_started_after(live, EventType.EVENT_TYPE_TIMER_FIRED)
    bulk_tasks = [await task_started_after(handle) for handle in bulk]
    assert breach_task < min(bulk_tasks)
    # and the alert's notification was queued before any bulk instance's assignment
    queued = [row.kind for row in sorted(_rows(sessions, Delivery), key=lambda row: row.id)]
    assert queued[:2] == ["task.assigned", "alert.breach"]  # the live task's, then its alert
    assert alert.instance_id.startswith(f"call-now/live-{run}/")
    assert live_key == 0  # a live instance keeps Temporal's default


def _rows(sessions: SessionFactory, model: Any) -> list[Any]:
    with sessions() as session:
        return list(session.exec(select(model)).all())
