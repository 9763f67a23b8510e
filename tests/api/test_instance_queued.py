"""An instance with work queued ahead of its state query: its page answers from the store.

A state query answers after every event that came before it, so the server holds a query to an
instance until the workflow task it has queued has run. During a burst of breaches that is the
burst's drain time. Here, on the real dev server (the time-skipping server answers queries its
own way), a worker opens the instance's task and stops; an event then queues a workflow task
that no worker takes, so every state query to the instance is held, as in a burst.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import pytest_asyncio
from temporalio.testing import WorkflowEnvironment

from duly.client import queued_since
from duly.language.loader import Definitions
from duly.settings import Settings
from duly.store.models import Task
from workflows.messages import EventInput, workflow_of

from .conftest import Api, api_on, api_settings, process_worker, quote, signed_in_as

pytestmark = pytest.mark.timeout(180)


class Left(NamedTuple):
    """An instance whose task a worker opened before it stopped, and the API that shows it."""

    api: Api
    instance: str
    task: Task


@pytest_asyncio.fixture(loop_scope="session")
async def left(
    dev_server_env: WorkflowEnvironment,
    definitions: Definitions,
    tmp_path: Path,
    smtp: tuple[Settings, Any],
) -> AsyncIterator[Left]:
    """The API on the dev server and a fresh store; a worker ran only to open the task."""
    settings = api_settings(smtp, f"test-{uuid.uuid4()}")
    async with api_on(dev_server_env, definitions, settings, tmp_path) as api:
        async with process_worker(api, settings):
            instance = await api.start("quote-follow-up", quote(owner="ana"))
            task = await api.open_task(instance)
            answered = (await api.get(f"/api/instances/{instance}", "maria")).json()
            assert answered["state_error"] is None
            assert answered["state"]["task"]["task_id"] == task.id
        yield Left(api, instance, task)
        await api.client.get_workflow_handle(workflow_of(instance, task=False)).terminate("over")


async def test_a_page_of_an_instance_with_work_queued_says_so_and_shows_the_store(
    left: Left,
) -> None:
    api, instance, task = left
    # No worker now: an event queues a workflow task that nobody takes
    handle = api.client.get_workflow_handle(workflow_of(instance, task=False))
    assert await queued_since(api.client, instance) is None
    await handle.signal("event", EventInput(id=f"noted-{uuid.uuid4()}", type="quote.noted"))
    assert await queued_since(api.client, instance) is not None

    signed_in_as(api, "maria")
    page = await api.http.get(f"/instances/{instance}")
    assert page.status_code == 200, page.text
    assert "Live state unavailable" in page.text
    assert "has work queued" in page.text
    assert "has no work queued" not in page.text
    assert task.title in page.text  # the open task, from the store
    assert 'class="current-step">call-customer<' in page.text

    shown = (await api.get(f"/api/instances/{instance}", "maria")).json()
    assert shown["state"] is None
    assert "has work queued" in shown["state_error"]
    assert [t["id"] for t in shown["tasks"]] == [task.id]


async def test_an_instance_nobody_answers_for_asks_whether_a_worker_runs(left: Left) -> None:
    """No work queued, yet no answer: nothing polls the instance's queue for its query."""
    assert await queued_since(left.api.client, left.instance) is None
    shown = (await left.api.get(f"/api/instances/{left.instance}", "maria")).json()
    assert "has no work queued" in shown["state_error"]
    assert "check that a duly worker is running" in shown["state_error"]


async def test_a_server_too_busy_to_describe_the_instance_is_named_not_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from duly import client as duly_client
    from duly.services import instances

    async def busy(client: object, instance: str) -> None:
        await asyncio.sleep(60)  # a server answering nothing, as under a heavy burst

    monkeypatch.setattr(instances, "DESCRIBE_TIMEOUT", 0.05)
    monkeypatch.setattr(duly_client, "queued_since", busy)
    said = await instances._unanswered(None, "quote-follow-up/Q-1/abc", 1.5)  # type: ignore[arg-type]
    assert "the Temporal server did not say why within 0.05 s" in said
    assert "has no work queued" not in said
