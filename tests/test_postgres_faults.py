"""PostgreSQL goes away mid-flight and comes back: the worker and the web app recover on their
own, and every instance, task, fact row, alert and notification is there exactly once.

The database is a private PostgreSQL cluster made for this test (initdb + pg_ctl, run as the
`postgres` OS user, on a free loopback port): the shared server on 5432 is never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import structlog
from conftest import Inbox, free_port
from sqlalchemy import func
from sqlmodel import select
from support import definitions_with, poll
from temporalio.testing import WorkflowEnvironment

from duly.api.app import create_app
from duly.api.server import serve
from duly.client import TaskRejected, complete_task, start_instance
from duly.language.loader import load_definitions
from duly.logs import configure
from duly.services.auth import issue_token
from duly.settings import Settings
from duly.store.db import session_factory, write_session
from duly.store.models import Alert, Delivery, Instance, StepFact, Task
from duly.worker import prepare_database, run_worker

pytestmark = pytest.mark.slow

PG_BIN = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
OUTAGE = 9.0  # seconds PostgreSQL stays down: B's SLA (6 s from before it) runs out inside
RECOVERY_TIMEOUT = 40.0  # activity retries back off to at most 30 s (workflows/process.py)

DRILL = """\
process: outage-drill
title: Call a lead within seconds
version: 1
calendar: us-east
team: inbound-sales
trigger: {event: drill.outage, key: "{{ lead.id }}"}
start: call
steps:
  call:
    kind: task
    title: "Call {{ lead.name }}"
    assign: user:ana
    sla:
      within: 6 seconds
      escalate:
        - {at: 100%, notify: manager}
    outcomes: {reached: done}
  done: {kind: end, result: done}
"""


class PrivatePostgres:
    """A throwaway PostgreSQL cluster in a temp dir, owned and run by the `postgres` user."""

    def __init__(self) -> None:
        binaries = PG_BIN[-1].parent
        self.initdb, self.pg_ctl = binaries / "initdb", binaries / "pg_ctl"
        self.root = Path(tempfile.mkdtemp(prefix="duly-pg-"))
        shutil.chown(self.root, user="postgres")
        self.data = self.root / "data"
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *command: str | Path) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *map(str, command)],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def init(self) -> None:
        self._run(self.initdb, "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(
            self.pg_ctl, "-D", self.data, "-l", self.root / "log", "-o", options, "-w", "start"
        )

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", self.data, "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._run(self.pg_ctl, "-D", self.data, "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    if not PG_BIN or shutil.which("runuser") is None or os.geteuid() != 0:
        pytest.skip("needs PostgreSQL's server binaries and root (to run them as `postgres`)")
    server = PrivatePostgres()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.remove()


@pytest_asyncio.fixture(loop_scope="session")
async def stack(
    postgres: PrivatePostgres,
    tmp_path: Path,
    dev_server_env: WorkflowEnvironment,
    smtp: tuple[Settings, Inbox],
    task_queue: str,
) -> AsyncIterator[dict[str, Any]]:
    """A worker and the web app on the private PostgreSQL, as in production."""
    mail, _ = smtp
    definitions_dir = definitions_with(tmp_path / "definitions", {"outage-drill": DRILL})
    settings = Settings(
        data_dir=tmp_path,
        database_url=postgres.url,
        definitions=definitions_dir,
        task_queue=task_queue,
        smtp_host=mail.smtp_host,
        smtp_port=mail.smtp_port,
        smtp_from=mail.smtp_from,
        web_port=free_port(),
        log_format="json",
    )
    configure(settings)  # production logging: an outage fails every call, and logs each
    definitions = load_definitions(definitions_dir)
    engine = prepare_database(settings, definitions)  # the migrations, on PostgreSQL
    sessions = session_factory(engine)
    with write_session(sessions) as session:
        token = issue_token(session=session, user_id="maria")
    client = dev_server_env.client
    app = create_app(settings, definitions, client=client)  # its own engine and pool
    stop = asyncio.Event()
    running = [
        asyncio.create_task(run_worker(client, settings, stop, task_queue=task_queue)),
        asyncio.create_task(serve(app, "127.0.0.1", settings.web_port, stop)),
    ]
    try:
        yield {
            "settings": settings,
            "definitions": definitions,
            "client": client,
            "sessions": sessions,
            "web": f"http://127.0.0.1:{settings.web_port}",
            "token": token,
        }
    finally:
        stop.set()
        await asyncio.gather(*running, return_exceptions=True)
        engine.dispose()
        structlog.reset_defaults()
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_duly", False)]:
            root.removeHandler(handler)


async def test_postgres_outage_loses_and_duplicates_nothing(
    stack: dict[str, Any], postgres: PrivatePostgres, smtp: tuple[Settings, Inbox]
) -> None:
    _, inbox = smtp
    client, sessions = stack["client"], stack["sessions"]
    headers = {"Authorization": f"Bearer {stack['token']}"}

    async def start(key: str) -> str:
        return await start_instance(
            client,
            stack["definitions"],
            "outage-drill",
            {"lead": {"id": key, "name": key}},
            task_queue=stack["settings"].task_queue,
        )

    async def complete(task: str) -> None:
        # The task's row commits a moment before its workflow hears that the task is open
        deadline = asyncio.get_running_loop().time() + RECOVERY_TIMEOUT
        while True:
            try:
                await complete_task(client, task, "reached", by="ana")
                return
            except TaskRejected as exc:
                if "no open task right now" not in str(exc):
                    raise
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def task_of(instance: str) -> str | None:
        with sessions() as session:
            row = session.exec(select(Task).where(Task.instance_id == instance)).first()
            return row.id if row else None

    def count(model: Any, *where: Any) -> int:
        with sessions() as session:
            return int(session.exec(select(func.count()).select_from(model).where(*where)).one())

    def deliveries_sent() -> bool:
        with sessions() as session:
            rows = session.exec(select(Delivery)).all()
            return bool(rows) and all(row.status == "sent" for row in rows)

    # Before: A is worked at once; B's and D's tasks stay open
    group_a = [await start(f"A{n}") for n in range(2)]
    group_b = [await start(f"B{n}") for n in range(2)]
    group_d = [await start(f"D{n}") for n in range(2)]
    for instance in group_a:
        task = await poll(lambda i=instance: task_of(i), what=f"{instance}'s task", timeout=10)
        await complete(task)
    b_tasks = [await poll(lambda i=i: task_of(i), what=f"{i}'s task", timeout=10) for i in group_b]
    d_tasks = [await poll(lambda i=i: task_of(i), what=f"{i}'s task", timeout=10) for i in group_d]
    await poll(deliveries_sent, what="the assignment emails before the outage", timeout=10)

    postgres.stop()
    # During: reps complete D's tasks (in time), C's instances start, B's SLAs run out
    completing = [asyncio.create_task(complete(task)) for task in d_tasks]
    group_c = [await start(f"C{n}") for n in range(2)]
    async with httpx.AsyncClient(base_url=stack["web"], timeout=30) as web:
        down = await web.get("/api/tasks", headers=headers)
        assert down.status_code == 503
        assert "database is unavailable" in down.json()["detail"]
        await asyncio.sleep(OUTAGE)
        postgres.start()

        # After: the web app answers again by itself (its pool drops dead connections)
        async def web_answers() -> bool:
            return (await web.get("/api/tasks", headers=headers)).status_code == 200

        await poll(web_answers, what="the web app to answer again", timeout=10)

    # ...and the worker catches up: D's completions land, C's tasks open, B's breach alerts
    await asyncio.gather(*completing)
    for instance in group_c:
        task = await poll(
            lambda i=instance: task_of(i), what=f"{instance}'s task", timeout=RECOVERY_TIMEOUT
        )
        await complete(task)
    await poll(
        lambda: count(Alert) >= len(group_b), what="B's breach alerts", timeout=RECOVERY_TIMEOUT
    )
    for task in b_tasks:
        await complete(task)
    instances = group_a + group_b + group_c + group_d
    for instance in instances:
        workflow = instance.rsplit("/", 1)[0]
        await client.get_workflow_handle(workflow).result()

    await poll(
        lambda: count(Instance, Instance.status == "completed") == len(instances),
        what="every instance recorded as completed",
        timeout=RECOVERY_TIMEOUT,
    )
    await poll(deliveries_sent, what="every notification sent", timeout=RECOVERY_TIMEOUT)

    # Exactly once each: instances, tasks, fact rows (a task step and an end per instance)
    assert count(Instance) == len(instances)
    assert count(Task) == len(instances)
    assert count(Task, Task.status == "completed") == len(instances)
    with sessions() as session:
        facts = session.exec(select(StepFact)).all()
        alerts = session.exec(select(Alert)).all()
        deliveries = session.exec(select(Delivery)).all()
    assert sorted((f.instance_id, f.step, f.visit) for f in facts) == sorted(
        (instance, step, 1) for instance in instances for step in ("call", "done")
    )
    # B breached during the outage (A, C and D were done in time, unless the machine is very
    # slow): one alert to the manager per breached task, no more, no less
    breached = sorted(f.instance_id for f in facts if f.step == "call" and f.sla_met is False)
    assert set(group_b) <= set(breached)
    assert sorted(a.instance_id or "" for a in alerts) == breached
    assert {(a.level, a.recipient) for a in alerts} == {("breach", "maria")}
    # An email per assignment and per alert, each sent once
    assert sorted(d.kind for d in deliveries) == sorted(
        ["task.assigned"] * len(instances) + ["alert.breach"] * len(alerts)
    )
    assert len(inbox.envelopes) == len(deliveries)
