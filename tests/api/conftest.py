"""The API on a real Temporal (time-skipping) with a real worker on a fresh SQLite store."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest_asyncio
from sqlmodel import Session, select
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.process import ProcessActivities
from duly.api.app import create_app
from duly.api.web.session import SESSION_COOKIE, open_session
from duly.language.loader import Definitions
from duly.services.auth import issue_token
from duly.services.signing import signed_headers
from duly.settings import Settings
from duly.store.crud import sync_org
from duly.store.db import create_all, make_engine, session_factory, write_session
from duly.store.models import Instance, Task
from workflows.contracts import ProcessContract, implementations
from workflows.messages import EventInput, InstanceState, ProcessResult, workflow_of
from workflows.process import ProcessWorkflow
from workflows.sandbox import workflow_runner

SECRET = "test-secret-" + "x" * 20
NEW_YORK = ZoneInfo("America/New_York")
USERS = ("ana", "ben", "chloe", "dev", "emma", "felix", "maria", "omar", "sam")


@dataclass
class Api:
    """The app behind an httpx client, its database, its Temporal, and every user's token."""

    http: httpx.AsyncClient
    sessions: Callable[[], Session]
    definitions: Definitions
    env: WorkflowEnvironment | None
    tokens: dict[str, str] = field(default_factory=dict)

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}

    async def get(self, path: str, user: str, **kwargs: Any) -> httpx.Response:
        return await self.http.get(path, headers=self.auth(user), **kwargs)

    async def post(self, path: str, user: str, body: Any = None, **kwargs: Any) -> httpx.Response:
        return await self.http.post(path, headers=self.auth(user), json=body, **kwargs)

    async def event(
        self, event: dict[str, Any], *, now: float | None = None, secret: str = SECRET
    ) -> httpx.Response:
        body = json.dumps(event).encode()
        return await self.http.post(
            "/api/events", content=body, headers=signed_headers(secret, body, now=now)
        )

    async def start(self, process: str, data: dict[str, Any], user: str = "sam") -> str:
        response = await self.post("/api/instances", user, {"process": process, "data": data})
        assert response.status_code == 201, response.text
        instance_id: str = response.json()["instance_id"]
        return instance_id

    async def open_task(self, instance_id: str, step: str | None = None) -> Task:
        """The instance's open task, once the worker has opened it (polled, a few seconds)."""
        for _ in range(200):
            with self.sessions() as session:
                query = select(Task).where(Task.instance_id == instance_id, Task.status == "open")
                task = session.exec(query).first()
            if task is not None and (step is None or task.step == step):
                return task
            await asyncio.sleep(0.05)
        raise AssertionError(f"{instance_id} opened no task {step or ''}")

    async def until(self, check: Callable[[], Any], what: str = "the check") -> Any:
        """Poll (in real time, a few seconds at most) until `check()` is truthy; return it."""
        for _ in range(200):
            if value := check():
                return value
            await asyncio.sleep(0.05)
        raise AssertionError(f"{what} never held")

    async def state(
        self, instance_id: str, check: Callable[[InstanceState], bool] = lambda s: True
    ) -> InstanceState:
        """The instance's live state, once `check` holds (polled, a few seconds at most)."""
        handle = self.client.get_workflow_handle(workflow_of(instance_id, task=False))
        for _ in range(200):
            state: InstanceState = await handle.query("state", result_type=InstanceState)
            if check(state):
                return state
            await asyncio.sleep(0.05)
        raise AssertionError(f"{instance_id} never reached the state: {state}")

    def row(self, model: Any, key: Any) -> Any:
        with self.sessions() as session:
            return session.get(model, key)

    def rows(self, model: Any, *where: Any) -> list[Any]:
        with self.sessions() as session:
            return list(session.exec(select(model).where(*where)).all())

    @property
    def client(self) -> Client:
        assert self.env is not None
        return self.env.client

    async def sleep_until(self, moment: datetime) -> None:
        assert self.env is not None
        await self.env.sleep(moment - await self.env.get_current_time())

    async def next_monday(self, hour: int) -> datetime:
        """Monday `hour`:00 New York of a week with five ordinary working days, ahead of the
        time-skipping server's clock (which only moves forward)."""
        assert self.env is not None
        calendar = self.definitions.processes["quote-follow-up"].calendar
        day = (await self.env.get_current_time()).astimezone(NEW_YORK).date() + timedelta(days=1)

        def ordinary(offset: int) -> bool:
            d = day + timedelta(days=offset)
            return d not in calendar.closed_dates and d not in calendar.special_hours

        while not (day.weekday() == 0 and all(ordinary(n) for n in range(5))):
            day += timedelta(days=1)
        return datetime.combine(day, time(hour), tzinfo=NEW_YORK)


def make_store(tmp_path: Path, definitions: Definitions) -> tuple[Any, Any, dict[str, str]]:
    db = make_engine(f"sqlite:///{tmp_path / 'duly.db'}")
    create_all(db)
    sessions = session_factory(db)
    with write_session(sessions) as session:
        sync_org(session=session, org=definitions.org)
        tokens = {user: issue_token(session=session, user_id=user) for user in USERS}
    return db, sessions, tokens


def api_settings(smtp: tuple[Settings, Any], task_queue: str) -> Settings:
    """The SMTP sink's settings, with the events secret and the test's own task queue."""
    mail, _ = smtp
    return mail.model_copy(update={"events_secret": SECRET, "task_queue": task_queue})


@contextlib.asynccontextmanager
async def api_on(
    env: WorkflowEnvironment, definitions: Definitions, settings: Settings, tmp_path: Path
) -> AsyncIterator[Api]:
    """The API on `env`'s Temporal and a fresh store; no worker runs (see `process_worker`)."""
    db, sessions, tokens = make_store(tmp_path, definitions)
    app = create_app(settings, definitions, engine=db, client=env.client)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://duly.test") as http:
        yield Api(http, sessions, definitions, env, tokens)
    db.dispose()


@contextlib.asynccontextmanager
async def process_worker(api: Api, settings: Settings) -> AsyncIterator[None]:
    """A worker running ProcessWorkflow and the real activities on `settings.task_queue`."""
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with Worker(
            api.client,
            task_queue=settings.task_queue,
            workflows=[ProcessWorkflow],
            activities=implementations(
                [ProcessContract], [ProcessActivities(api.sessions, settings)]
            ),
            activity_executor=executor,
            workflow_runner=workflow_runner(),
        ):
            yield


@pytest_asyncio.fixture(loop_scope="session")
async def api(
    time_skipping_env: WorkflowEnvironment,
    definitions: Definitions,
    task_queue: str,
    tmp_path: Path,
    smtp: tuple[Settings, Any],
) -> AsyncIterator[Api]:
    """The API with a worker running real activities; every instance is ended afterwards."""
    settings = api_settings(smtp, task_queue)
    async with api_on(time_skipping_env, definitions, settings, tmp_path) as api:
        async with process_worker(api, settings):
            yield api
            await end_everything(api.client, api.sessions, definitions)


async def end_everything(
    client: Client, sessions: Callable[[], Session], definitions: Definitions
) -> None:
    """End every running instance through its process's first `on:` event, and wait for it.

    Never terminate: the time-skipping server keeps time locked after a run is terminated with
    an activity in flight, which would stall every later test.
    """
    with sessions() as session:
        running = session.exec(select(Instance).where(Instance.status == "running")).all()
    for instance in running:
        spec = definitions.processes[instance.process].spec
        handle = client.get_workflow_handle(instance.workflow_id, result_type=ProcessResult)
        end = EventInput(id=f"end-{uuid.uuid4()}", type=next(iter(spec.on)), data={})
        await handle.signal("event", end)
        async with asyncio.timeout(30):
            await handle.result()


@pytest_asyncio.fixture(loop_scope="session")
async def offline_api(definitions: Definitions, tmp_path: Path) -> AsyncIterator[Api]:
    """The API without Temporal: for what must be refused before anything reaches it."""

    async def unreachable() -> Client:
        raise AssertionError("this request must not reach Temporal")

    settings = Settings(events_secret=SECRET, data_dir=tmp_path)
    db, sessions, tokens = make_store(tmp_path, definitions)
    app = create_app(settings, definitions, engine=db, client_factory=unreachable)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://duly.test") as http:
        yield Api(http, sessions, definitions, None, tokens)
    db.dispose()


def signed_in_as(api: Api, user: str) -> None:
    """Give the client a session of `user`'s, opened as signing in does."""
    with write_session(api.sessions) as session:
        session_id = open_session(session=session, user_id=user)
    api.http.cookies.set(SESSION_COOKIE, session_id)


def quote(number: str | None = None, owner: str = "ana", **extra: Any) -> dict[str, Any]:
    number = number or f"Q-{uuid.uuid4().hex[:8]}"
    return {
        "quote": {"id": number, "number": number, "amount": 12_000},
        "contact": {"name": "Lee Park", "email": "lee@example.com"},
        "owner": owner,
        **extra,
    }


def lead(owner: str = "ana", source: str = "web", **extra: Any) -> dict[str, Any]:
    return {
        "lead": {
            "id": f"L-{uuid.uuid4().hex[:8]}",
            "name": "Kim Lee",
            "company": "Acme",
            "source": source,
        },
        "owner": owner,
        **extra,
    }
