"""Bad input gets a clear 4xx saying what was wrong; user data never comes back as markup."""

from __future__ import annotations

import json

from duly.api.middleware import MAX_BODY_BYTES
from duly.store.db import write_session
from duly.store.models import Instance, Task
from duly.store.types import utc_now

from .conftest import Api, quote

TASK = "quote-follow-up/Q-1/abc/call-customer/1"


def seed_task(api: Api, assignee: str = "ana", title: str = "Call Lee") -> None:
    with write_session(api.sessions) as session:
        session.add(
            Instance(
                id="quote-follow-up/Q-1/abc",
                workflow_id="quote-follow-up/Q-1",
                process="quote-follow-up",
                version=1,
                hash="0" * 64,
                business_key="Q-1",
                data={"contact": {"name": title}},
                started_at=utc_now(),
            )
        )
        session.flush()
        session.add(
            Task(
                id=TASK,
                instance_id="quote-follow-up/Q-1/abc",
                process="quote-follow-up",
                step="call-customer",
                visit=1,
                title=title,
                assignee=assignee,
                team="inbound-sales",
                outcomes=["reached", "voicemail", "lost"],
                opened_at=utc_now(),
            )
        )


async def test_malformed_json_is_400_saying_so(offline_api: Api) -> None:
    seed_task(offline_api)
    response = await offline_api.http.post(
        f"/api/tasks/{TASK}/complete",
        content=b'{"outcome": "reached",',
        headers={**offline_api.auth("ana"), "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("the request body is not valid JSON:")


async def test_a_body_of_the_wrong_shape_is_422_naming_each_problem(offline_api: Api) -> None:
    seed_task(offline_api)
    response = await offline_api.post(
        f"/api/tasks/{TASK}/complete", "ana", {"outcome": 7, "fields": [], "colour": "red"}
    )
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "body.outcome: Input should be a valid string" in detail
    assert "body.fields: Input should be a valid dictionary" in detail
    assert "body.colour: Extra inputs are not permitted" in detail
    assert {tuple(e["loc"]) for e in response.json()["errors"]} >= {("body", "outcome")}

    empty = await offline_api.post(f"/api/tasks/{TASK}/complete", "ana", None)
    assert empty.status_code == 422
    assert "body: Field required" in empty.json()["detail"]

    query = await offline_api.get("/api/tasks", "ana", params={"limit": 0, "status": "lost"})
    assert query.status_code == 422
    assert "query.limit" in query.json()["detail"] and "query.status" in query.json()["detail"]


async def test_an_oversized_body_is_413_before_anything_reads_it(offline_api: Api) -> None:
    data = quote(padding="x" * MAX_BODY_BYTES)
    response = await offline_api.post(
        "/api/instances", "sam", {"process": "quote-follow-up", "data": data}
    )
    assert response.status_code == 413
    assert response.json()["detail"].endswith(
        f"the limit is {MAX_BODY_BYTES} bytes (256 KiB): send less data per request"
    )

    async def chunks():  # no Content-Length: the limit still holds while reading
        for _ in range(5):
            yield b"x" * (MAX_BODY_BYTES // 2)

    streamed = await offline_api.http.post(
        "/api/events", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert streamed.status_code == 413


async def test_user_data_comes_back_as_json_text_never_as_markup(offline_api: Api) -> None:
    script = "<script>alert(1)</script>"
    seed_task(offline_api, title=f"Call {script}")
    response = await offline_api.get("/api/tasks", "ana")
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.json()["items"][0]["title"] == f"Call {script}"

    refused = await offline_api.get(f"/api/tasks/{script}", "ana")
    assert refused.status_code == 404
    assert refused.headers["content-type"] == "application/json"
    assert json.loads(refused.text) == {"detail": f"no task '{script}'"}


async def test_unknown_routes_and_methods_answer_json(offline_api: Api) -> None:
    missing = await offline_api.get("/api/nothing", "ana")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}
    wrong = await offline_api.http.delete("/api/tasks")
    assert wrong.status_code == 405
