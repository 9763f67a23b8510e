"""A database for each test, on SQLite (a temp file) and on PostgreSQL (a throwaway schema).

PostgreSQL comes from DULY_TEST_POSTGRES_URL (default: the local trust-auth server). When it
is not reachable its tests are skipped, except under CI=true, where that fails the run.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError
from sqlmodel import SQLModel

from activities.messages import StartInstanceInput
from activities.process import ProcessActivities
from duly.language.model import OrgSpec
from duly.settings import Settings
from duly.store.crud import sync_org
from duly.store.db import SessionFactory, create_all, make_engine, session_factory, write_session

POSTGRES_URL = os.environ.get(
    "DULY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

ORG = OrgSpec.model_validate(
    {
        "users": {
            "maria": {"name": "Maria Lopez", "role": "manager"},
            "omar": {"name": "Omar Haddad", "role": "manager"},
            "ana": {"name": "Ana Silva"},
            "ben": {"name": "Ben Carter"},
            "chloe": {"name": "Chloe Martin"},
            "dev": {"name": "Dev Patel"},
            "sam": {"name": "Sam Okafor", "role": "admin"},
        },
        "teams": {
            "inbound-sales": {"manager": "maria", "members": ["ana", "ben", "chloe"]},
            "support": {"manager": "omar", "members": ["dev"]},
        },
    }
)
T0 = datetime(2026, 11, 18, 14, 0, tzinfo=UTC)


@pytest.fixture(scope="session")
def postgres_engine() -> Iterator[Engine]:
    """An engine whose search_path is a fresh schema, dropped when the session ends."""
    schema = f"duly_test_{uuid.uuid4().hex[:10]}"
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
        create_all(engine)
        yield engine
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path) -> Iterator[Engine]:
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


@pytest.fixture
def sessions(engine: Engine) -> SessionFactory:
    with write_session(session_factory(engine)) as session:
        sync_org(session=session, org=ORG)
    return session_factory(engine)


@pytest.fixture
def acts(sessions: SessionFactory) -> ProcessActivities:
    return ProcessActivities(sessions, Settings())


def start_input(instance_id: str = "quote-follow-up/Q-1", **changes: Any) -> StartInstanceInput:
    """What the workflow sends when an instance starts."""
    process, _, key = instance_id.partition("/")
    values: dict[str, Any] = {
        "instance_id": instance_id,
        "process": process,
        "version": 1,
        "hash": "a" * 64,
        "business_key": key,
        "compiled_json": json.dumps({"calendar": {"timezone": "America/New_York"}}),
        "started_at": T0,
        **changes,
    }
    return StartInstanceInput(**values)


@pytest.fixture
def instance(acts: ProcessActivities) -> str:
    """A recorded instance of quote-follow-up (calendar in New York), as tasks need."""
    acts.start_instance(start_input())
    return "quote-follow-up/Q-1"
