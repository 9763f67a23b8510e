"""Observability on real servers: the worker's and the web app's /metrics after real work, and
JSON log lines that say which process, instance, step and task an activity worked on."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import structlog
from conftest import Inbox, free_port
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import select
from support import definitions_with, poll
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from duly.api.app import create_app
from duly.api.server import serve
from duly.client import TaskRejected, complete_task, start_instance
from duly.language.loader import Definitions, load_definitions
from duly.logs import configure, context_of
from duly.settings import Settings
from duly.store.db import session_factory
from duly.store.models import Alert, Delivery, Task
from duly.temporal_client import connect
from duly.worker import prepare_database, run_worker

pytestmark = pytest.mark.slow

DRILL = """\
process: metrics-drill
title: A task with an SLA of seconds
version: 1
calendar: us-east
team: inbound-sales
trigger: {event: drill.metrics, key: "{{ lead.id }}"}
start: call
steps:
  call:
    kind: task
    title: "Call {{ lead.name }}"
    assign: user:ana
    sla:
      within: 2 seconds
      escalate:
        - {at: 100%, notify: manager}
    outcomes: {reached: done}
  done: {kind: end, result: done}
"""
TIMEOUT = 20.0


@pytest.fixture(scope="module")
def drill_definitions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return definitions_with(tmp_path_factory.mktemp("definitions"), {"metrics-drill": DRILL})


async def complete(client: Client, task: str) -> None:
    """Complete a task as ana, once its workflow knows it is open (its row commits first)."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        try:
            await complete_task(client, task, "reached", by="ana")
            return
        except TaskRejected as exc:
            if "no open task right now" not in str(exc):
                raise
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample at a Prometheus endpoint, by (name, sorted labels)."""
    answer = httpx.get(url, timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


def value(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@dataclass
class Running:
    settings: Settings
    definitions: Definitions
    client: Client
    worker_metrics: str
    web: str
    sessions: Any


@pytest_asyncio.fixture(loop_scope="session")
async def running(
    tmp_path: Path,
    drill_definitions: Path,
    dev_server_env: WorkflowEnvironment,
    smtp: tuple[Settings, Inbox],
    task_queue: str,
    capsys: pytest.CaptureFixture[str],
) -> AsyncIterator[Running]:
    """A worker (with its /metrics) and the web app, in production log mode, on a dev server."""
    mail, _ = smtp
    settings = Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'duly.db'}",
        definitions=drill_definitions,
        task_queue=task_queue,
        smtp_host=mail.smtp_host,
        smtp_port=mail.smtp_port,
        smtp_from=mail.smtp_from,
        metrics_port=free_port(),
        web_port=free_port(),
        log_format="json",
    )
    configure(settings)
    definitions = load_definitions(drill_definitions)
    engine = prepare_database(settings, definitions)
    address = dev_server_env.client.service_client.config.target_host
    client = await connect(address, settings=settings, metrics=True)
    stop = asyncio.Event()
    app = create_app(settings, definitions, client=client)  # its own engine, migrated
    tasks = [
        asyncio.create_task(run_worker(client, settings, stop, task_queue=task_queue)),
        asyncio.create_task(serve(app, "127.0.0.1", settings.web_port, stop)),
    ]
    try:
        yield Running(
            settings,
            definitions,
            client,
            f"http://127.0.0.1:{settings.metrics_port}/metrics",
            f"http://127.0.0.1:{settings.web_port}",
            session_factory(engine),
        )
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        engine.dispose()
        structlog.reset_defaults()
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_duly", False)]:
            root.removeHandler(handler)


async def test_metrics_count_real_work_and_logs_name_what_activities_worked_on(
    running: Running, smtp: tuple[Settings, Inbox], capsys: pytest.CaptureFixture[str]
) -> None:
    _, inbox = smtp
    before = await asyncio.to_thread(scrape, running.worker_metrics)

    # Two instances: one task done in time, one past its 2 s SLA (a breach alert to maria)
    quick = await start_instance(
        running.client,
        running.definitions,
        "metrics-drill",
        {"lead": {"id": "quick", "name": "Quick"}},
        task_queue=running.settings.task_queue,
    )
    late = await start_instance(
        running.client,
        running.definitions,
        "metrics-drill",
        {"lead": {"id": "late", "name": "Late"}},
        task_queue=running.settings.task_queue,
    )

    def task_of(instance: str) -> str | None:
        with running.sessions() as session:
            task = session.exec(select(Task).where(Task.instance_id == instance)).first()
            return task.id if task else None

    def breach_alert() -> Alert | None:
        with running.sessions() as session:
            return session.exec(select(Alert).where(Alert.instance_id == late)).first()

    quick_task = await poll(lambda: task_of(quick), what="the quick task", timeout=TIMEOUT)
    await complete(running.client, quick_task)
    late_task = await poll(lambda: task_of(late), what="the late task", timeout=TIMEOUT)
    await poll(breach_alert, what="the breach alert", timeout=TIMEOUT)
    await complete(running.client, late_task)

    def all_sent() -> int | None:
        with running.sessions() as session:
            rows = session.exec(select(Delivery)).all()
            return len(rows) if rows and all(row.status == "sent" for row in rows) else None

    def closed() -> bool:
        with running.sessions() as session:
            tasks = session.exec(select(Task)).all()
            return len(tasks) == 2 and all(task.status == "completed" for task in tasks)

    await poll(closed, what="both tasks closed", timeout=TIMEOUT)
    # ana hears of two assignments, maria of one breach
    sent = await poll(all_sent, what="every notification sent", timeout=TIMEOUT)
    assert sent == 3
    assert len(inbox.envelopes) == 3

    # The worker's endpoint: duly's counters moved by exactly what happened, once each
    after = await asyncio.to_thread(scrape, running.worker_metrics)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("duly_tasks_opened_total", process="metrics-drill") == 2
    assert delta("duly_tasks_completed_total", process="metrics-drill") == 2
    assert delta("duly_sla_breaches_total", process="metrics-drill", clock="step:call") == 1
    assert delta("duly_alerts_raised_total", level="breach") == 1
    assert delta("duly_notifications_delivered_total", channel="email", kind="task.assigned") == 2
    assert delta("duly_notifications_delivered_total", channel="email", kind="alert.breach") == 1
    assert delta("duly_notifications_failed_total", channel="email", kind="alert.breach") == 0
    # ...and the Temporal SDK's runtime metrics, from the worker that ran the activities
    names = {name for name, _ in after}
    assert any(n.startswith("temporal_activity_execution_latency") for n in names), names
    assert any(n.startswith("temporal_workflow_completed") for n in names), names

    # The web app's endpoint: its own requests, and its Temporal client's calls
    async with httpx.AsyncClient(base_url=running.web) as web:
        refused = await web.get("/api/tasks")
        assert refused.status_code == 401
        page = await web.get("/metrics")
    assert page.status_code == 200
    web_samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(page.text)
        for s in family.samples
    }
    assert value(web_samples, "duly_http_requests_total", method="GET", status="4xx") >= 1
    assert any(name.startswith("temporal_request") for name, _ in web_samples)

    # Every line on stderr is JSON; an activity's lines carry what it worked on
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    opened = [r for r in records if r.get("event") == "task_opened" and r.get("task") == late_task]
    assert opened, "no task_opened line for the late task"
    assert opened[0]["process"] == "metrics-drill"
    assert opened[0]["instance"] == late
    assert opened[0]["step"] == "call"
    assert opened[0]["activity"] == "open_task"
    recorded = [
        r for r in records if r.get("event") == "step_recorded" and r.get("instance") == late
    ]
    # a fact rides on the activity after its step (StepWrites), whose input names no process:
    # the activity's context does, and names the activity that wrote it
    assert recorded and recorded[0]["process"] == "metrics-drill"
    carriers = ("open_task", "record_writes", "finish_instance")
    assert recorded[0]["activity"] in carriers
    assert recorded[0]["workflow_id"] == "metrics-drill/late"


def test_an_activity_input_names_its_process_instance_step_and_task() -> None:
    from activities.messages import CloseTaskInput

    found = context_of(
        CloseTaskInput.model_construct(task_id="quote-follow-up/Q/1/abc/call-customer/2")
    )
    assert found == {
        "task": "quote-follow-up/Q/1/abc/call-customer/2",
        "instance": "quote-follow-up/Q/1/abc",
        "step": "call-customer",
        "visit": "2",
        "process": "quote-follow-up",
    }
    assert context_of("not a model") == {}
