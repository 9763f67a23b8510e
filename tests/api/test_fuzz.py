"""Schemathesis over the OpenAPI spec: whatever a client sends, the API answers without a 5xx."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from duly.api.app import create_app
from duly.language.loader import Definitions, load_definitions
from duly.services.signing import signed_headers
from duly.settings import Settings
from duly.store.db import make_engine

from .conftest import SECRET, make_store

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


async def _no_temporal() -> Client:
    raise AssertionError("the schema-only app reaches nothing")


# The spec comes from an app that is never called (schemathesis reads the spec when this module
# is collected, before any fixture); each test call goes to the `fuzzed` fixture's app instead.
# (`schemathesis.pytest.from_fixture` would do this, but it does not run on pytest 9 yet.)
schema = schemathesis.openapi.from_asgi(
    "/openapi.json",
    create_app(
        Settings(events_secret=SECRET),
        load_definitions(ROOT / "definitions"),
        engine=make_engine("sqlite://"),
        client_factory=_no_temporal,
    ),
)


@pytest.fixture
def fuzzed(
    dev_server_env: WorkflowEnvironment, definitions: Definitions, tmp_path: Path
) -> tuple[FastAPI, dict[str, str]]:
    """The app on a fresh store, reaching a real Temporal.

    The dev server rather than the time-skipping one: schemathesis calls the app from its own
    event loop (so the app connects its own client), and instances a fuzzed request may start
    hold no clock back there.
    """
    target = dev_server_env.client.service_client.config.target_host

    async def connect() -> Client:
        return await Client.connect(target, data_converter=pydantic_data_converter)

    db, _, tokens = make_store(tmp_path, definitions)
    config = Settings(events_secret=SECRET, data_dir=tmp_path, task_queue=f"fuzz-{uuid.uuid4()}")
    return create_app(config, definitions, engine=db, client_factory=connect), tokens


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
def test_no_request_makes_the_api_fail(case: Any, fuzzed: tuple[FastAPI, dict[str, str]]) -> None:
    app, tokens = fuzzed
    if case.path == "/api/events" and isinstance(case.body, dict):
        # signed, so the fuzzed event gets past the signature to everything behind it
        body = json.dumps(case.body).encode()
        response = case.call(app=app, headers=signed_headers(SECRET, body), data=body)
    else:
        response = case.call(app=app, headers={"Authorization": f"Bearer {tokens['sam']}"})
    case.validate_response(response, checks=[not_a_server_error])
