"""The API answers what its OpenAPI document says, to whatever schemathesis sends it.

schemathesis generates requests from the document (valid ones and invalid ones) for every
operation, /api/events included (a hook signs them as a CRM relay would), and checks each
answer: no 5xx, a documented status, a body that matches the documented schema. The app runs
in-process on a real SQLite store with some rows in it; Temporal is absent, so what needs it
must answer 503. Bounded: a few examples per operation, no deadline.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from conftest import ROOT
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.core.failures import ServerError
from temporalio.client import Client

from api.conftest import SECRET, Api, make_store
from duly.api.app import create_app
from duly.api.schemas import Problem
from duly.language.loader import Definitions, load_definitions
from duly.services.signing import signed_headers
from duly.settings import Settings
from duly.store.db import make_engine, write_session
from duly.store.models import Alert, Instance, StepFact, Task
from duly.store.types import utc_now
from duly.temporal_client import TemporalUnavailable

EVENTS = "/api/events"
INSTANCE = "quote-follow-up/Q-1/run1"
TOKENS: dict[str, str] = {}


@schemathesis.hook
def before_call(context: schemathesis.HookContext, case: schemathesis.Case, kwargs: Any) -> None:
    """Sign what is sent to /api/events, exactly as sent, with the events secret."""
    if case.operation.path != EVENTS:
        return
    body = _wire_body(case.body)
    kwargs["data"] = body  # these bytes and no others are sent, so the signature holds
    case.headers = {**(case.headers or {}), **signed_headers(SECRET, body)}


def _wire_body(body: Any) -> bytes:
    if isinstance(body, NotSet):
        return b""
    if isinstance(body, bytes):
        return body
    return json.dumps(body, allow_nan=False).encode()


def seed(sessions: Any) -> None:
    """An ended instance with a fact, an open task of Ana's and an alert for Maria."""
    now = utc_now()
    with write_session(sessions) as session:
        session.add(
            Instance(
                id=INSTANCE,
                workflow_id="quote-follow-up/Q-1",
                process="quote-follow-up",
                version=1,
                hash="0" * 64,
                business_key="Q-1",
                status="completed",
                result="won",
                data={"quote": {"id": "Q-1"}, "owner": "ana"},
                started_at=now - timedelta(hours=3),
                ended_at=now,
            )
        )
        session.flush()
        session.add(
            Task(
                id=f"{INSTANCE}/call-customer/1",
                instance_id=INSTANCE,
                process="quote-follow-up",
                step="call-customer",
                visit=1,
                title="Call Lee Park about quote Q-1",
                assignee="ana",
                team="inbound-sales",
                outcomes=["reached", "voicemail", "lost"],
                opened_at=now - timedelta(hours=2),
                due_at=now + timedelta(days=2),
            )
        )
        session.add(
            StepFact(
                instance_id=INSTANCE,
                process="quote-follow-up",
                version=1,
                step="call-customer",
                kind="task",
                visit=1,
                assignee="ana",
                team="inbound-sales",
                opened_at=now - timedelta(hours=3),
                due_at=now + timedelta(days=2),
                closed_at=now - timedelta(hours=1),
                outcome="reached",
                sla_met=True,
                business_seconds=7200.0,
            )
        )
        session.add(
            Alert(
                key="rung:maria",
                event_key="rung",
                instance_id=INSTANCE,
                process="quote-follow-up",
                step="call-customer",
                level="breach",
                recipient="maria",
                message="Call Lee Park about quote Q-1 is overdue",
            )
        )


def openapi_document() -> dict[str, Any]:
    """The app's OpenAPI document (made without a store: the document needs none)."""
    definitions = load_definitions(ROOT / "definitions")
    engine = make_engine("sqlite://")
    try:
        return create_app(Settings(), definitions, engine=engine).openapi()
    finally:
        engine.dispose()


class ServedLater:
    """An ASGI app passing every call on to the app `live_app` makes for the module's tests.

    schemathesis needs the document, and the app it sends to, when the module is collected
    (its lazy `from_fixture` does not run under pytest 9); the store comes from a fixture.
    """

    def __init__(self) -> None:
        self.app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.app is not None, "the live_app fixture sets the app first"
        await self.app(scope, receive, send)


SERVED = ServedLater()
schema = schemathesis.openapi.from_dict(
    openapi_document(),
    config=schemathesis.Config.from_dict(
        {
            "generation": {"max-examples": 5},
            "phases": {"coverage": {"enabled": True}},
            # A request can match the schema and still be refused with a documented 422 the
            # schema cannot express (data without the process's business key, an outcome
            # the step does not have), so "schema-valid means accepted" does not hold here
            "checks": {"positive_data_acceptance": {"enabled": False}},
        }
    ),
)
schema.app = SERVED


@pytest.fixture(scope="module")
def live_app(definitions: Definitions, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The app on a seeded SQLite store, without Temporal."""
    tmp_path: Path = tmp_path_factory.mktemp("openapi")

    async def absent() -> Client:
        raise TemporalUnavailable("127.0.0.1:7233", "absent in this test")

    db, sessions, tokens = make_store(tmp_path, definitions)
    seed(sessions)
    TOKENS.update(tokens)
    SERVED.app = create_app(
        Settings(events_secret=SECRET, data_dir=tmp_path),
        definitions,
        engine=db,
        client_factory=absent,
    )
    yield SERVED.app
    SERVED.app = None
    db.dispose()


@schema.parametrize()
@settings(
    max_examples=8,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
)
def test_every_answer_is_documented_and_none_is_a_server_error(
    case: schemathesis.Case, live_app: Any
) -> None:
    headers = {} if case.operation.path == EVENTS else {"Authorization": f"Bearer {TOKENS['sam']}"}
    case.call_and_validate(
        headers=headers,
        excluded_checks=[not_a_server_error],
        additional_checks=[no_server_error_but_temporal_absent],
    )


def no_server_error_but_temporal_absent(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case
) -> None:
    """No 5xx, except the 503 that says Temporal is unreachable (it is, here)."""
    if response.status_code < 500:
        return
    if response.status_code == 503 and "cannot reach Temporal" in response.text:
        return
    raise ServerError(operation=case.operation.label, status_code=response.status_code)


async def test_the_hook_signs_events_so_they_are_tested_past_the_signature(
    live_app: Any,
) -> None:
    event = {"id": "evt-signed", "type": "quote.sent", "data": {"quote": {"id": "Q-2"}}}
    signed = schema["/api/events"]["POST"].Case(body=event).call()
    # past the signature, so far as Temporal, which is absent here
    assert signed.status_code == 503 and "cannot reach Temporal" in signed.text
    transport = httpx.ASGITransport(app=live_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://duly.test") as http:
        unsigned = await http.post("/api/events", json=event)
    assert unsigned.status_code == 401


# --- what schemathesis found, each pinned by a test of its own ----------------------------------


async def test_every_422_is_documented_as_the_problem_the_api_answers(offline_api: Api) -> None:
    document = (await offline_api.http.get("/openapi.json")).json()
    assert "HTTPValidationError" not in json.dumps(document)
    assert "ValidationError" not in document["components"]["schemas"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            assert "503" in answers, f"{method} {path}"
            if "422" in answers:
                schema_ = answers["422"]["content"]["application/json"]["schema"]
                assert schema_ == {"$ref": "#/components/schemas/Problem"}, f"{method} {path}"
    problem = document["components"]["schemas"]["Problem"]
    assert problem["required"] == ["detail"] and problem["properties"]["detail"]["type"] == "string"

    answer = await offline_api.get("/api/tasks?limit=0", "ana")
    assert answer.status_code == 422
    assert Problem.model_validate(answer.json()).errors is not None
    assert answer.json()["errors"][0]["loc"] == ["query", "limit"]


async def test_a_method_not_allowed_lists_every_method_the_path_has(offline_api: Api) -> None:
    for method, path, allowed in (
        ("DELETE", "/api/instances", "GET, POST"),
        ("OPTIONS", "/api/instances", "GET, POST"),
        ("PUT", "/api/events", "POST"),
        ("OPTIONS", "/api/tasks/quote-follow-up/Q-1/run1/call-customer/1/complete", "POST"),
        ("DELETE", "/login", "GET, POST"),
    ):
        answer = await offline_api.http.request(method, path, headers=offline_api.auth("sam"))
        assert answer.status_code == 405, (method, path)
        assert answer.headers["allow"] == allowed, (method, path)
        assert answer.json() == {"detail": "Method Not Allowed"}


async def test_an_unauthenticated_caller_is_refused_before_its_parameters_are_read(
    offline_api: Api,
) -> None:
    contradictory = "/api/reports/attainment?weeks=2&since=2026-11-01T00:00:00Z"
    assert (await offline_api.http.get(contradictory)).status_code == 401
    assert (await offline_api.get(contradictory, "sam")).status_code == 422
