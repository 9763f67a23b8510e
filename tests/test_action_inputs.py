"""Actions fed hostile event data, run by ProcessWorkflow on the time-skipping server.

A bad address, a line break in a subject, a `with:` value past the sandbox's limits, a path
climbing out of a webhook's URL: each either goes out made safe or takes the step's `on_error`,
with the reason in the instance's history, never a failed or stuck instance.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from support import posted_paths, store_with_org
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.process import ProcessActivities
from duly.client import start_instance
from duly.language.loader import load_definitions
from duly.settings import Settings
from workflows.contracts import ProcessContract, implementations
from workflows.messages import InstanceState, ProcessResult, workflow_of
from workflows.process import ProcessWorkflow
from workflows.sandbox import workflow_runner

ROOT = Path(__file__).resolve().parent.parent

PROCESS = """
process: hostile-data
title: Actions fed whatever the event carried
version: 1
calendar: us-east
team: inbound-sales
trigger: {{event: lead.created, key: "{{{{ lead.id }}}}"}}
start: gate
steps:
  gate:
    kind: decision
    branches: [{{when: "(lead.name * lead.times) | length > 1000", next: bad-address}}]
    otherwise: mail
  mail:
    kind: action
    do: email
    with: {{to: "{{{{ lead.email }}}}", subject: "Welcome {{{{ lead.name }}}}", body: Hi}}
    next: hook
    on_error: bad-address
  hook:
    kind: action
    do: webhook
    with: {{url: "{receiver}/crm/leads/{{{{ lead.record }}}}?name={{{{ lead.name }}}}"}}
    next: costly
    on_error: hook-failed
  costly:
    kind: action
    do: set
    with: {{lead.note: "{{{{ lead.name * lead.times }}}}"}}
    next: done
    on_error: too-costly
  done: {{kind: end, result: done}}
  bad-address: {{kind: end, result: bad-address}}
  hook-failed: {{kind: end, result: hook-failed}}
  too-costly: {{kind: end, result: too-costly}}
"""


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[str]]]:
    with posted_paths() as receiving:
        yield receiving


async def run_instance(
    env: WorkflowEnvironment,
    tmp_path: Path,
    settings: Settings,
    receiver_url: str,
    lead: dict[str, Any],
) -> tuple[ProcessResult, InstanceState]:
    folder = tmp_path / "definitions"
    for part in ("calendars", "templates"):
        shutil.copytree(ROOT / "definitions" / part, folder / part)
    shutil.copy(ROOT / "definitions" / "org.yaml", folder / "org.yaml")
    (folder / "processes").mkdir()
    text = PROCESS.format(receiver=receiver_url)
    (folder / "processes" / "hostile-data.yaml").write_text(text, encoding="utf-8")
    definitions = load_definitions(folder)
    db, sessions = store_with_org(tmp_path / "duly.db", definitions.org)
    task_queue = f"test-{uuid.uuid4()}"
    with ThreadPoolExecutor(max_workers=4) as executor:
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[ProcessWorkflow],
            activities=implementations([ProcessContract], [ProcessActivities(sessions, settings)]),
            activity_executor=executor,
            workflow_runner=workflow_runner(),
        ):
            instance = await start_instance(
                env.client, definitions, "hostile-data", {"lead": lead}, task_queue=task_queue
            )
            handle = env.client.get_workflow_handle(
                workflow_of(instance, task=False), result_type=ProcessResult
            )
            result: ProcessResult = await handle.result()
            state = await handle.query("state", result_type=InstanceState)
    db.dispose()
    return result, state


def details(state: InstanceState, kind: str) -> list[str]:
    return [entry.detail for entry in state.history if entry.kind == kind]


LEAD = {"id": "L-1", "record": "L-1", "email": "lee@example.com", "name": "Lee", "times": 2}


async def test_a_clean_lead_runs_every_action(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path, smtp: Any, receiver: Any
) -> None:
    settings, inbox = smtp
    url, received = receiver
    result, _ = await run_instance(time_skipping_env, tmp_path, settings, url, LEAD)
    assert (result.status, result.result) == ("completed", "done")
    assert [e.rcpt_tos for e in inbox.envelopes] == [["lee@example.com"]]
    assert received == ["/crm/leads/L-1?name=Lee"]
    assert result.data["lead"]["note"] == "LeeLee"


@pytest.mark.parametrize(
    "email",
    ["lee@example.com, boss@evil.example", "lee@example.com\r\nBcc: boss@evil.example", "lee"],
)
async def test_a_bad_address_takes_on_error_and_sends_nothing(
    email: str, time_skipping_env: WorkflowEnvironment, tmp_path: Path, smtp: Any, receiver: Any
) -> None:
    settings, inbox = smtp
    url, _ = receiver
    lead = {**LEAD, "email": email}
    result, state = await run_instance(time_skipping_env, tmp_path, settings, url, lead)
    assert (result.status, result.result) == ("completed", "bad-address")
    assert inbox.envelopes == []
    [reason] = details(state, "action-failed")
    assert "'to'" in reason and repr(email) in reason


async def test_a_line_break_in_the_subject_is_sent_on_one_line(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path, smtp: Any, receiver: Any
) -> None:
    settings, inbox = smtp
    url, _ = receiver
    lead = {**LEAD, "name": "Lee\r\nBcc: boss@evil.example"}
    result, _ = await run_instance(time_skipping_env, tmp_path, settings, url, lead)
    [envelope] = inbox.envelopes
    assert envelope.rcpt_tos == ["lee@example.com"]
    message = message_from_bytes(envelope.content)
    assert message["Subject"] == "Welcome Lee Bcc: boss@evil.example"
    assert message["Bcc"] is None
    assert result.status == "completed"


async def test_data_cannot_climb_out_of_the_webhook_path_or_add_query_fields(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path, smtp: Any, receiver: Any
) -> None:
    settings, _ = smtp
    url, received = receiver
    # (the business key may not hold a '/': the record id in the path is other data)
    lead = {**LEAD, "record": "../../admin", "name": "x&admin=1"}
    result, _ = await run_instance(time_skipping_env, tmp_path, settings, url, lead)
    assert received == ["/crm/leads/..%2F..%2Fadmin?name=x%26admin%3D1"]
    assert result.result == "done"


async def test_a_with_value_past_the_sandbox_limits_takes_on_error(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path, smtp: Any, receiver: Any
) -> None:
    settings, _ = smtp
    url, _ = receiver
    lead = {**LEAD, "times": 10**9}
    result, state = await run_instance(time_skipping_env, tmp_path, settings, url, lead)
    assert (result.status, result.result) == ("completed", "too-costly")
    [reason] = details(state, "action-failed")
    assert "goes past the sandbox's limits" in reason
    # the same limit in a condition: the branch is not taken, and the history says why
    [why] = details(state, "expression-error")
    assert "goes past the sandbox's limits" in why and "lead.times" in why


async def test_a_webhook_host_outside_the_allow_list_takes_on_error_unposted(
    time_skipping_env: WorkflowEnvironment, tmp_path: Path, smtp: Any, receiver: Any
) -> None:
    settings, _ = smtp
    url, received = receiver
    only_crm = settings.model_copy(update={"outbound_hosts": "crm.example.com"})
    result, state = await run_instance(time_skipping_env, tmp_path, only_crm, url, LEAD)
    assert (result.status, result.result) == ("completed", "hook-failed")
    assert received == []
    [reason] = details(state, "action-failed")
    assert "not in DULY_OUTBOUND_HOSTS" in reason
    assert json.dumps(reason)  # a plain, printable message
