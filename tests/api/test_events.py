"""Inbound events: signed, fresh, once per id; they start instances and steer live ones."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from urllib.parse import quote as url_quote

import httpx

from duly.api.app import create_app
from duly.language.loader import Definitions
from duly.services.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    signature,
    signed_headers,
    verify,
)
from duly.settings import Settings
from duly.store.models import InboundEvent, Instance
from workflows.messages import InstanceState, ProcessResult, workflow_of

from .conftest import SECRET, Api, quote


def sent(number: str) -> dict[str, object]:
    return {"id": f"evt-{uuid.uuid4()}", "type": "quote.sent", "data": quote(number)}


async def test_an_unsigned_or_badly_signed_event_is_refused_and_nothing_happens(
    offline_api: Api,
) -> None:
    event = sent("Q-UNSIGNED")
    unsigned = await offline_api.http.post("/api/events", json=event)
    assert unsigned.status_code == 401
    assert "unsigned request" in unsigned.json()["detail"]

    body = json.dumps(event).encode()
    forged = await offline_api.http.post(
        "/api/events",
        content=body,
        headers={
            TIMESTAMP_HEADER: str(int(time.time())),
            SIGNATURE_HEADER: signature("another secret", str(int(time.time())), body),
        },
    )
    assert forged.status_code == 401
    assert "does not match the body" in forged.json()["detail"]

    # signed, then changed on the way
    stamp = str(int(time.time()))
    changed = await offline_api.http.post(
        "/api/events",
        content=body.replace(b"Q-UNSIGNED", b"Q-TAMPERED"),
        headers={TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(SECRET, stamp, body)},
    )
    assert changed.status_code == 401
    assert offline_api.rows(InboundEvent) == []
    assert offline_api.rows(Instance) == []


async def test_a_replayed_event_outside_the_window_is_refused(offline_api: Api) -> None:
    event = sent("Q-REPLAY")
    old = await offline_api.event(event, now=time.time() - 600)
    assert old.status_code == 401
    assert "outside the 300 s replay window" in old.json()["detail"]
    ahead = await offline_api.event(event, now=time.time() + 600)
    assert ahead.status_code == 401
    assert offline_api.rows(InboundEvent) == []


async def test_events_are_off_without_a_secret(definitions: Definitions, tmp_path: Path) -> None:
    app = create_app(Settings(data_dir=tmp_path), definitions)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.post("/api/events", json=sent("Q-1"))
    assert response.status_code == 503
    assert "set DULY_EVENTS_SECRET" in response.json()["detail"]


async def test_a_signed_event_starts_an_instance_and_a_resent_one_changes_nothing(
    api: Api,
) -> None:
    number = f"Q-{uuid.uuid4().hex[:6]}"
    event = sent(number)
    first = await api.event(event)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["status"] == "accepted" and body["event_id"] == event["id"]
    (instance,) = body["instances"]
    assert instance.startswith(f"quote-follow-up/{number}/")
    task = await api.open_task(instance, "call-customer")
    # the row is written before the workflow has taken the task in
    # settled: the task open and the SLA audit written (that write lands a moment later)
    before = await api.state(
        instance, lambda s: s.task is not None and s.sla_events_written == len(s.sla_events)
    )
    handle = api.client.get_workflow_handle(workflow_of(instance, task=False))

    again = await api.event(event)
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate", "event_id": event["id"], "instances": []}
    after = await handle.query("state", result_type=InstanceState)
    assert after == before
    assert [i.id for i in api.rows(Instance)] == [instance]
    (recorded,) = api.rows(InboundEvent)
    assert (recorded.id, recorded.type, recorded.instance_id) == (
        event["id"],
        "quote.sent",
        instance,
    )
    assert api.row(type(task), task.id).status == "open"


async def test_an_event_is_routed_to_the_live_instance_of_its_business_key(api: Api) -> None:
    number = f"Q-{uuid.uuid4().hex[:6]}"
    (instance,) = (await api.event(sent(number))).json()["instances"]
    await api.open_task(instance, "call-customer")

    accepted = {"id": f"evt-{uuid.uuid4()}", "type": "quote.accepted", "data": quote(number)}
    routed = await api.event(accepted)
    assert routed.json() == {
        "status": "accepted",
        "event_id": accepted["id"],
        "instances": [instance],
    }
    handle = api.client.get_workflow_handle(
        workflow_of(instance, task=False), result_type=ProcessResult
    )
    assert (await handle.result()).result == "won"
    assert (await api.event(accepted)).json()["status"] == "duplicate"

    unknown = {"id": f"evt-{uuid.uuid4()}", "type": "quote.accepted", "data": quote("Q-NONE")}
    nowhere = await api.event(unknown)
    assert nowhere.json() == {"status": "accepted", "event_id": unknown["id"], "instances": []}


async def test_a_signed_but_malformed_event_is_a_clear_4xx(offline_api: Api) -> None:
    not_json = b'{"id": "e1", "type": '
    stamp = str(int(time.time()))
    response = await offline_api.http.post(
        "/api/events",
        content=not_json,
        headers={TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: signature(SECRET, stamp, not_json)},
    )
    assert response.status_code == 400
    assert response.json()["detail"].startswith("the request body is not valid JSON")

    shapeless = await offline_api.event({"type": "quote.sent", "data": []})  # type: ignore[dict-item]
    assert shapeless.status_code == 422
    assert "body.id: Field required" in shapeless.json()["detail"]
    assert "body.data: Input should be a valid dictionary" in shapeless.json()["detail"]


async def test_an_event_that_triggers_a_process_without_its_key_is_422(api: Api) -> None:
    event = {"id": f"evt-{uuid.uuid4()}", "type": "quote.sent", "data": {"quote": {}}}
    response = await api.event(event)
    assert response.status_code == 422
    assert "the business key '{{ quote.id }}' is empty" in response.json()["detail"]
    assert api.rows(InboundEvent) == []  # not recorded: a corrected resend goes through


def test_the_signing_recipe_in_the_docs_signs_as_duly_checks(monkeypatch) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    recipe = docs.split("```python\n", 1)[1].split("```", 1)[0]
    sent_requests: list[tuple[bytes, dict[str, str]]] = []

    class Answer:
        def raise_for_status(self) -> None: ...

        def json(self) -> dict[str, str]:
            return {"status": "accepted"}

    def post(url: str, *, content: bytes, headers: dict[str, str]) -> Answer:
        sent_requests.append((content, headers))
        return Answer()

    monkeypatch.setattr(httpx, "post", post)
    namespace: dict[str, object] = {}
    exec(compile(recipe, "docs/events.md", "exec"), namespace)
    namespace["send"]({"id": "e1", "type": "quote.sent", "data": {}}, SECRET)  # type: ignore[operator]
    ((body, headers),) = sent_requests
    verify(SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body)


# --- limits at the door -------------------------------------------------------------------------


def _raw_event(data_json: bytes) -> bytes:
    return b'{"id": "evt-limit", "type": "quote.sent", "data": ' + data_json + b"}"


OVER_LIMITS = [
    # (the data as JSON text, the path named, words of the reason)
    (b'{"quote": {"id": "Q-1"}, "a": ' + b"[" * 1000 + b"]" * 1000 + b"}", "data.a", "nested"),
    (b'{"a": ' * 5000 + b"1" + b"}" * 5000, "data.a.a.a", "nested deeper than 32 levels"),
    (b'{"quote": {"id": "Q-1", "amount": ' + b"9" * 5000 + b"}}", "data.quote.amount", "5,000"),
    (b'{"quote": {"id": "Q-1", "amount": NaN}}', "data.quote.amount", "NaN"),
    (b'{"quote": {"id": "Q-1", "amount": 1e999}}', "data.quote.amount", "1e999"),
    (
        b'{"quote": {"id": "Q-1"}, "contact": {"notes": ["a", "b", "c", "'
        + b"x" * 70_000
        + b'"]}}',
        "data.contact.notes[3]",
        "a string of 70,000 characters",
    ),
    (b'{"quote": {"id": "Q-1\\u0000"}}', "data.quote.id", "NUL"),
    (b'{"quote": {"id": "\\ud800"}}', "data.quote.id", "unpaired surrogate"),
    # a key the answer itself must name without a surrogate in it (found by the fuzz test)
    (b'{"quote": {"id": "Q-1"}, "extra": {"\\ud800": 1}}', 'data.extra["\\ud800"]', "surrogate"),
]


async def test_data_over_a_limit_is_422_naming_the_field_and_nothing_is_taken(
    offline_api: Api,
) -> None:
    # offline_api fails any request that reaches Temporal: these are refused before
    for data_json, path, reason in OVER_LIMITS:
        body = _raw_event(data_json)
        response = await offline_api.http.post(
            "/api/events", content=body, headers=signed_headers(SECRET, body)
        )
        assert response.status_code == 422, (path, response.text)
        answer = response.json()
        (error,) = answer["errors"]
        assert error["ctx"]["path"].startswith(path)
        assert error["loc"][:2] == ["body", "data"]
        assert reason in error["msg"]
        assert reason in answer["detail"]
    # the id was not taken: the same id with data that keeps the limits goes through later
    assert offline_api.rows(InboundEvent) == []
    assert offline_api.rows(Instance) == []


async def test_starting_on_data_over_a_limit_is_422_too(offline_api: Api) -> None:
    for data_json, path, reason in OVER_LIMITS:
        body = b'{"process": "quote-follow-up", "data": ' + data_json + b"}"
        response = await offline_api.http.post(
            "/api/instances",
            content=body,
            headers={**offline_api.auth("sam"), "Content-Type": "application/json"},
        )
        assert response.status_code == 422, (path, response.text)
        assert response.json()["errors"][0]["ctx"]["path"].startswith(path)
        assert reason in response.json()["detail"]
    assert offline_api.rows(Instance) == []


async def test_an_event_too_deep_for_the_engine_does_not_poison_its_key(api: Api) -> None:
    # ~200 levels used to be "accepted" and then stuck the workflow for ever, key and id with it
    number = f"Q-{uuid.uuid4().hex[:6]}"
    deep = sent(number)
    deep["data"]["notes"] = nested_lists(200)  # type: ignore[index]
    refused = await api.event(deep)
    assert refused.status_code == 422
    assert "nested deeper than 32 levels" in refused.json()["detail"]
    assert api.rows(InboundEvent) == [] and api.rows(Instance) == []

    clean = {**sent(number), "id": deep["id"]}  # the id was not taken
    answer = await api.event(clean)
    assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text
    (instance,) = answer.json()["instances"]
    state = await api.state(instance, lambda s: s.task is not None)
    assert state.business_key == number


def nested_lists(levels: int) -> list[object]:
    value: list[object] = []
    for _ in range(levels - 1):
        value = [value]
    return value


# --- business keys -------------------------------------------------------------------------------


async def test_a_key_that_would_make_another_instances_id_is_refused(api: Api) -> None:
    number = f"Q-{uuid.uuid4().hex[:6]}"
    (victim,) = (await api.event(sent(number))).json()["instances"]
    await api.open_task(victim)
    run = victim.rsplit("/", 1)[1]
    # the key "<number>/<run>" makes the workflow id `quote-follow-up/<number>/<run>`: the
    # victim's instance id
    forged = await api.event(sent(f"{number}/{run}"))
    assert forged.status_code == 422
    assert "cannot name an instance: it holds a '/'" in forged.json()["detail"]
    assert [i.id for i in api.rows(Instance)] == [victim]
    shown = (await api.get(f"/api/instances/{victim}", "sam")).json()
    assert shown["state"]["instance_id"] == victim


async def test_odd_keys_either_work_end_to_end_or_are_422(api: Api) -> None:
    refused = {
        "a/b": "holds a '/'",
        "..": "'.' and '..' are not keys",
        "Q-1\nQ-2": "control character U+000A",
        "Q-1\x00": "NUL",  # refused by the limits, before the key is rendered
        "Q" * 1_001: "1,001 characters long; at most 200",
    }
    for key, reason in refused.items():
        answer = await api.event(sent(key))
        assert answer.status_code == 422, key
        assert reason in answer.json()["detail"], answer.text
    assert api.rows(Instance) == [] and api.rows(InboundEvent) == []

    for key in (f"Größe 東京 😀 {uuid.uuid4().hex[:4]}", f"ACME 42 {uuid.uuid4().hex[:4]}"):
        answer = await api.event(sent(key))
        assert answer.status_code == 200, answer.text
        (instance,) = answer.json()["instances"]
        await api.open_task(instance)
        for address in (instance, f"quote-follow-up/{key}"):
            shown = await api.get(f"/api/instances/{quote_path(address)}", "sam")
            assert shown.status_code == 200, shown.text
            assert shown.json()["instance"]["business_key"] == key
            assert shown.json()["state"]["instance_id"] == instance


def quote_path(address: str) -> str:
    return url_quote(address, safe="/")


async def test_the_422_in_the_docs_is_what_the_api_answers(offline_api: Api) -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "events.md").read_text()
    limits = docs.split("## Limits", 1)[1]
    example = json.loads(limits.split("```json\n", 1)[1].split("```", 1)[0])
    data = {"quote": {"id": "Q-1"}, "contact": {"notes": ["a", "b", "c", "x" * 70_000]}}
    response = await offline_api.event({"id": "evt-docs", "type": "quote.sent", "data": data})
    assert response.status_code == 422
    assert response.json() == example


async def test_an_id_or_type_that_is_not_unicode_text_is_refused_with_a_utf8_answer(
    offline_api: Api,
) -> None:
    for body in (
        b'{"id": "evt-\\ud800", "type": "quote.sent", "data": {"quote": {"id": "Q-1"}}}',
        b'{"id": "evt-1", "type": "quote.\\udfff", "data": {"quote": {"id": "Q-1"}}}',
    ):
        response = await offline_api.http.post(
            "/api/events", content=body, headers=signed_headers(SECRET, body)
        )
        assert 400 <= response.status_code < 500, response.text
        assert response.json()["detail"]
    assert offline_api.rows(InboundEvent) == []
