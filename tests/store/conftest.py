"""A database for each test, on SQLite and PostgreSQL (`engine`, in tests/conftest.py), with the
test org synced, and the activities on it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import Engine

from activities.messages import StartInstanceInput
from activities.process import ProcessActivities
from duly.language.model import OrgSpec
from duly.settings import Settings
from duly.store.crud import sync_org
from duly.store.db import SessionFactory, session_factory, write_session

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
