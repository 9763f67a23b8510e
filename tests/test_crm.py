"""CRM write-back: `crm.update`, `crm.task` and `crm.note` against a local CRM server.

The actions run as the `run_action` activity runs them (`activities.actions.run`), against
tests/crm_server.py answering HubSpot's, Salesforce's and Pipedrive's documented endpoints;
then end to end on the time-skipping server: a task completed, its outcome and the rep's note
written back once despite a 429 and a 500 on the way.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from crm_server import TOKEN, FakeCrm, crm_server
from sqlmodel import select
from support import definitions_with, poll, store_with_org
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.actions import run
from activities.messages import RunActionInput
from activities.process import ProcessActivities
from duly.client import start_instance
from duly.crm.http import retry_after
from duly.language.loader import load_definitions
from duly.settings import Settings
from duly.store.models import StepFact
from workflows.contracts import ProcessContract, implementations
from workflows.messages import CompleteTaskInput, InstanceState, ProcessResult, workflow_of
from workflows.process import ProcessWorkflow
from workflows.sandbox import workflow_runner

KEY = "lead-follow-up/L-1/0a1b2c3d4e5f/log-call/1"


@pytest.fixture
def crm() -> Iterator[FakeCrm]:
    with crm_server() as server:
        server.record("hubspot", "contacts", "501", firstname="Lee")
        server.record("salesforce", "Lead", "00Q1", LastName="Park")
        server.record("salesforce", "Opportunity", "0061", Name="Acme renewal")
        server.record("pipedrive", "deals", "42", title="Acme")
        yield server


def settings_for(crm: FakeCrm, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "hubspot_token": TOKEN,
        "hubspot_api_url": crm.url,
        "hubspot_dedupe_property": "duly_key",
        "salesforce_instance_url": crm.url,
        "salesforce_token": TOKEN,
        "pipedrive_api_token": TOKEN,
        "pipedrive_api_url": crm.url,
        "smtp_port": 1,
    }
    return Settings(**(values | overrides))


def action(name: str, key: str = KEY, **params: Any) -> RunActionInput:
    return RunActionInput(
        action=name, instance_id="i", step="s", visit=1, params=params, idempotency_key=key
    )


def failure(call: Any) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        call()
    return caught.value


# --- HubSpot ----------------------------------------------------------------------------------


def test_hubspot_update_sets_properties_as_text(crm: FakeCrm) -> None:
    fields = {"duly_sla_status": "met", "duly_on_time": True, "duly_calls": 2}
    result = run(
        action("crm.update", crm="hubspot", object="contacts", id="501", fields=fields),
        settings_for(crm),
    )
    record = crm.records[("hubspot", "contacts", "501")]
    assert record == {
        "firstname": "Lee",
        "duly_sla_status": "met",
        "duly_on_time": "true",
        "duly_calls": "2",
    }
    assert ("PATCH", "/crm/v3/objects/contacts/501") in crm.requests
    assert "hubspot: set" in result.detail


def test_hubspot_task_is_completed_associated_and_logged_once_when_its_answer_is_lost(
    crm: FakeCrm,
) -> None:
    crm.fail_next(502, path="/crm/v3/objects/tasks$", after=True)  # made, but the answer lost
    params = {
        "crm": "hubspot",
        "object": "contacts",
        "id": "501",
        "subject": "First call: reached",
        "body": "Spoke to Lee",
        "owner": "7001",
        "due": "2026-12-01T14:05:00+00:00",
    }
    assert not failure(lambda: run(action("crm.task", **params), settings_for(crm))).non_retryable
    run(action("crm.task", **params), settings_for(crm))  # the retry finds it

    [task] = crm.tasks
    assert task["properties"]["hs_task_status"] == "COMPLETED"
    assert task["properties"]["hs_task_subject"] == "First call: reached"
    assert task["properties"]["hs_timestamp"] == "1796133900000"  # milliseconds
    assert task["properties"]["hubspot_owner_id"] == "7001"
    assert task["associations"] == [
        {
            "to": {"id": "501"},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}],
        }
    ]


def test_hubspot_429_is_retried_after_the_wait_hubspot_asks_for(crm: FakeCrm) -> None:
    crm.fail_next(429, headers={"Retry-After": "7"}, body={"category": "RATE_LIMITS"})
    error = failure(
        lambda: run(
            action("crm.note", crm="hubspot", object="contacts", id="501", body="x"),
            settings_for(crm),
        )
    )
    assert not error.non_retryable
    assert error.type == "CrmRateLimited"
    assert error.next_retry_delay == timedelta(seconds=7)
    assert crm.notes == []


def test_a_record_the_crm_does_not_have_is_not_retried(crm: FakeCrm) -> None:
    error = failure(
        lambda: run(
            action("crm.update", crm="hubspot", object="contacts", id="999", fields={"a": "b"}),
            settings_for(crm),
        )
    )
    assert error.non_retryable
    assert "404" in error.message and "/crm/v3/objects/contacts/999" in error.message


def test_missing_credentials_name_the_setting_and_are_not_retried(crm: FakeCrm) -> None:
    error = failure(
        lambda: run(
            action("crm.note", crm="salesforce", object="Lead", id="00Q1", body="x"),
            Settings(salesforce_token=""),
        )
    )
    assert error.non_retryable
    assert "DULY_SALESFORCE_TOKEN" in error.message


def test_an_unknown_crm_is_a_parameter_error(crm: FakeCrm) -> None:
    error = failure(
        lambda: run(
            action("crm.note", crm="zoho", object="Lead", id="1", body="x"), settings_for(crm)
        )
    )
    assert error.non_retryable
    assert "expected one of hubspot, salesforce, pipedrive" in error.message


def test_a_5xx_is_retried(crm: FakeCrm) -> None:
    crm.fail_next(503)
    error = failure(
        lambda: run(
            action("crm.update", crm="pipedrive", object="deals", id="42", fields={"a": 1}),
            settings_for(crm),
        )
    )
    assert not error.non_retryable and error.type == "CrmUnavailable"


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("10") == timedelta(seconds=10)
    assert retry_after(None) is None
    assert retry_after("soon") is None
    assert retry_after("99999") == timedelta(minutes=10)  # capped
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == timedelta(0)  # already past


# --- Salesforce -------------------------------------------------------------------------------


def test_salesforce_update_patches_the_sobject(crm: FakeCrm) -> None:
    run(
        action(
            "crm.update", crm="salesforce", object="Lead", id="00Q1", fields={"Status": "Working"}
        ),
        settings_for(crm),
    )
    assert crm.records[("salesforce", "Lead", "00Q1")]["Status"] == "Working"
    assert ("PATCH", "/services/data/v62.0/sobjects/Lead/00Q1") in crm.requests


def test_salesforce_task_is_an_upsert_by_external_id_so_a_retry_makes_no_second(
    crm: FakeCrm,
) -> None:
    crm.fail_next(500, path="/sobjects/Task/", after=True)
    params = {"crm": "salesforce", "object": "Lead", "id": "00Q1", "subject": "Call: reached"}
    assert not failure(lambda: run(action("crm.task", **params), settings_for(crm))).non_retryable
    result = run(action("crm.task", **params), settings_for(crm))

    [task] = crm.tasks
    assert task["fields"]["WhoId"] == "00Q1"  # a Lead is a Who; an Opportunity a What
    assert task["fields"]["Status"] == "Completed"
    assert task["fields"]["Subject"] == "Call: reached"
    assert "updated" in result.detail


def test_salesforce_note_on_an_opportunity_is_a_completed_task_on_its_what(crm: FakeCrm) -> None:
    run(
        action("crm.note", crm="salesforce", object="Opportunity", id="0061", body="Sent terms"),
        settings_for(crm),
    )
    [task] = crm.tasks
    assert task["fields"]["WhatId"] == "0061"
    assert (task["fields"]["Description"], task["fields"]["Status"]) == ("Sent terms", "Completed")


def test_salesforce_request_limit_exceeded_is_a_rate_limit(crm: FakeCrm) -> None:
    crm.fail_next(
        403,
        body=[{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
    )
    error = failure(
        lambda: run(
            action("crm.note", crm="salesforce", object="Lead", id="00Q1", body="x"),
            settings_for(crm),
        )
    )
    assert not error.non_retryable and error.type == "CrmRateLimited"
    crm.fail_next(403, body=[{"message": "no access", "errorCode": "INSUFFICIENT_ACCESS"}])
    refused = failure(
        lambda: run(
            action("crm.note", crm="salesforce", object="Lead", id="00Q1", body="x"),
            settings_for(crm),
        )
    )
    assert refused.non_retryable


def test_salesforce_without_an_external_id_field_creates_with_post(crm: FakeCrm) -> None:
    run(
        action("crm.note", crm="salesforce", object="Lead", id="00Q1", body="x"),
        settings_for(crm, salesforce_external_id_field=""),
    )
    assert ("POST", "/services/data/v62.0/sobjects/Task") in crm.requests
    assert len(crm.tasks) == 1


# --- Pipedrive --------------------------------------------------------------------------------


def test_pipedrive_update_patches_the_deal_with_the_api_token(crm: FakeCrm) -> None:
    run(
        action("crm.update", crm="pipedrive", object="deals", id="42", fields={"stage_id": 3}),
        settings_for(crm),
    )
    assert crm.records[("pipedrive", "deals", "42")]["stage_id"] == 3
    assert ("PATCH", "/api/v2/deals/42") in crm.requests


def test_pipedrive_activity_and_note_are_logged_once_though_retried(crm: FakeCrm) -> None:
    crm.fail_next(500, path="/api/v2/activities", after=True)
    crm.fail_next(429, path="/v1/notes", headers={"Retry-After": "2"})
    task = {"crm": "pipedrive", "object": "deals", "id": "42", "subject": "Call", "done": False}
    note = {"crm": "pipedrive", "object": "deals", "id": "42", "body": "Spoke to Lee"}
    for params, name in ((task, "crm.task"), (note, "crm.note")):
        with pytest.raises(ApplicationError) as first:
            run(action(name, **params), settings_for(crm))
        assert not first.value.non_retryable
        run(action(name, **params), settings_for(crm))
        run(action(name, **params), settings_for(crm))

    [activity] = crm.tasks
    assert activity["fields"]["deal_id"] == 42 and activity["fields"]["done"] is False
    assert activity["fields"]["type"] == "task"
    [logged] = crm.notes
    assert logged["fields"]["content"].startswith("Spoke to Lee\n[duly:")


def test_pipedrive_refuses_an_object_it_does_not_have(crm: FakeCrm) -> None:
    error = failure(
        lambda: run(
            action("crm.note", crm="pipedrive", object="contacts", id="42", body="x"),
            settings_for(crm),
        )
    )
    assert error.non_retryable
    assert "expected one of deals, persons, organizations, leads" in error.message


# --- end to end -------------------------------------------------------------------------------

WRITE_BACK = """
process: call-and-log
title: Call the lead and log the outcome in HubSpot
version: 1
calendar: us-east
team: inbound-sales
trigger: {event: lead.created, key: "{{ lead.id }}"}
start: call
steps:
  call:
    kind: task
    title: "Call {{ lead.id }}"
    assign: owner
    outcomes: {reached: mark-contact, no-answer: mark-contact}
  mark-contact:
    kind: action
    do: crm.update
    with:
      crm: hubspot
      object: contacts
      id: "{{ lead.hubspot_id }}"
      fields: {duly_last_outcome: "{{ last_task.outcome }}"}
    next: log-call
    on_error: unlogged
  log-call:
    kind: action
    do: crm.note
    with:
      crm: hubspot
      object: contacts
      id: "{{ lead.hubspot_id }}"
      body: "{{ last_task.outcome }}: {{ last_task.note }} ({{ last_task.by }})"
    next: done
    on_error: unlogged
  done: {kind: end}
  unlogged: {kind: end, result: unlogged}
"""


@pytest_asyncio.fixture(loop_scope="session")
async def worker(
    time_skipping_env: WorkflowEnvironment, task_queue: str, tmp_path: Path, crm: FakeCrm
) -> AsyncIterator[Any]:
    definitions = load_definitions(
        definitions_with(tmp_path / "defs", {"call-and-log": WRITE_BACK})
    )
    db, sessions = store_with_org(tmp_path / "duly.db", definitions.org)
    activities = ProcessActivities(sessions, settings_for(crm))

    async def complete(key: str, hubspot_id: str, note: str) -> tuple[ProcessResult, str]:
        instance = await start_instance(
            time_skipping_env.client,
            definitions,
            "call-and-log",
            {"lead": {"id": key, "hubspot_id": hubspot_id}, "owner": "ana"},
            task_queue=task_queue,
        )
        handle = time_skipping_env.client.get_workflow_handle(
            workflow_of(instance, task=False), result_type=ProcessResult
        )

        async def open_task() -> InstanceState | None:
            state = await handle.query("state", result_type=InstanceState)
            return state if state.task is not None else None

        state = await poll(open_task, timeout=20, what="the call task")
        assert state.task is not None
        await handle.execute_update(
            "complete_task",
            CompleteTaskInput(task_id=state.task.task_id, outcome="reached", note=note, by="ana"),
        )
        return await handle.result(), instance

    with ThreadPoolExecutor(max_workers=8) as executor:
        async with Worker(
            time_skipping_env.client,
            task_queue=task_queue,
            workflows=[ProcessWorkflow],
            activities=implementations([ProcessContract], [activities]),
            activity_executor=executor,
            workflow_runner=workflow_runner(),
        ):
            yield complete, sessions
    db.dispose()


async def test_a_completed_task_is_written_back_once_despite_a_429_and_a_500(
    worker: Any, crm: FakeCrm
) -> None:
    complete, _ = worker
    crm.fail_next(429, path="/crm/v3/objects/notes$", headers={"Retry-After": "1"})
    crm.fail_next(500, path="/crm/v3/objects/notes$", after=True)  # written, answer lost

    result, _ = await complete("L-1", "501", "Wants a demo next week")

    assert result.result == "done"
    assert crm.records[("hubspot", "contacts", "501")]["duly_last_outcome"] == "reached"
    [note] = crm.notes
    assert note["properties"]["hs_note_body"] == "reached: Wants a demo next week (ana)"
    assert note["associations"][0]["to"] == {"id": "501"}
    creates = [r for r in crm.requests if r == ("POST", "/crm/v3/objects/notes")]
    assert len(creates) == 2  # the 429 was refused before the note was made; the 500 after it


async def test_a_write_the_crm_refuses_takes_the_steps_on_error(worker: Any, crm: FakeCrm) -> None:
    complete, sessions = worker
    result, instance = await complete("L-2", "404404", "")  # HubSpot has no such contact

    assert result.result == "unlogged"
    assert crm.notes == []
    with sessions() as session:
        facts = session.exec(select(StepFact).where(StepFact.instance_id == instance)).all()
    assert {f.step: f.outcome for f in facts}["mark-contact"] == "error"
    assert json.dumps(crm.records[("hubspot", "contacts", "501")])  # untouched record still there
