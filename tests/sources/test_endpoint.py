"""POST /api/sources/<name>: each CRM's request, verified, mapped and delivered like /api/events."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from api.conftest import Api, make_store
from prometheus_client import REGISTRY

from duly.api.app import create_app
from duly.language.loader import Definitions
from duly.settings import Settings
from duly.store.models import InboundEvent, Instance

from .conftest import (
    HUBSPOT_SECRET,
    HUBSPOT_URL,
    SALESFORCE_SECRET,
    HubSpotApi,
    basic,
    hubspot_event,
    hubspot_v3_headers,
    outbound_message,
    standard_headers,
)


def recently() -> str:
    """A CRM's timestamp for a change five minutes ago: its SLA still runs (a fixed date would
    put the deadline, and the ladder's reassignment, behind a test run some days later)."""
    return (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def counted(source: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "duly_source_events_total", {"source": source, "outcome": outcome}
    )
    return value or 0.0


def nothing_recorded(api: Api) -> bool:
    return api.rows(InboundEvent) == [] and api.rows(Instance) == []


async def post_hubspot(
    api: Api, events: list[dict[str, object]], **signing: object
) -> httpx.Response:
    body = json.dumps(events).encode()
    headers = hubspot_v3_headers(body, **signing)  # type: ignore[arg-type]
    return await api.http.post("/api/sources/hubspot", content=body, headers=headers)


# --- refused before anything is recorded (no Temporal behind the app) --------------------------


async def test_a_bad_signature_is_401_and_records_nothing(offline_api: Api) -> None:
    before = counted("hubspot", "refused")
    body = json.dumps([hubspot_event(101)]).encode()
    headers = hubspot_v3_headers(body, secret="not-the-client-secret")
    answer = await offline_api.http.post("/api/sources/hubspot", content=body, headers=headers)
    assert answer.status_code == 401, answer.text
    assert "X-HubSpot-Signature-v3 does not match" in answer.json()["detail"]
    assert nothing_recorded(offline_api)
    assert counted("hubspot", "refused") == before + 1


async def test_a_stale_signature_is_401(offline_api: Api) -> None:
    stale_ms = int(time.time() * 1000) - 6 * 60 * 1000
    answer = await post_hubspot(offline_api, [hubspot_event(102)], now_ms=stale_ms)
    assert answer.status_code == 401
    assert "replay window" in answer.json()["detail"]
    assert nothing_recorded(offline_api)


async def test_a_signature_over_another_url_is_401(offline_api: Api) -> None:
    # the source's `url` is what HubSpot signed; a request signed for another URL is refused
    other = "https://evil.example.com/api/sources/hubspot"
    answer = await post_hubspot(offline_api, [hubspot_event(103)], url=other)
    assert answer.status_code == 401


async def test_malformed_bodies_are_400_with_the_reason(offline_api: Api) -> None:
    for body, reason in (
        (b"[{not json", "not valid JSON"),
        (b'"a string"', "JSON array of events"),
        (json.dumps([{"objectId": 1}]).encode(), "event [0] has no portalId"),
    ):
        headers = hubspot_v3_headers(body)
        answer = await offline_api.http.post("/api/sources/hubspot", content=body, headers=headers)
        assert answer.status_code == 400, answer.text
        assert reason in answer.json()["detail"]
    assert nothing_recorded(offline_api)


async def test_an_oversize_body_is_413(offline_api: Api) -> None:
    events = [hubspot_event(n, event_id=n) for n in range(3000)]
    answer = await post_hubspot(offline_api, events)
    assert answer.status_code == 413
    assert nothing_recorded(offline_api)


async def test_unknown_object_types_are_ignored_and_counted(offline_api: Api) -> None:
    before = counted("hubspot", "ignored")
    events = [
        hubspot_event(104, kind="company.creation"),
        hubspot_event(105, kind="ticket.deletion"),
    ]
    answer = await post_hubspot(offline_api, events)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 0
    assert body["ignored"] == [
        "object type 'company' is not mapped by source 'hubspot'",
        "object type 'ticket' is not mapped by source 'hubspot'",
    ]
    assert counted("hubspot", "ignored") == before + 2
    assert nothing_recorded(offline_api)
    scraped = (await offline_api.http.get("/metrics")).text
    assert 'duly_source_events_total{outcome="ignored",source="hubspot"}' in scraped


async def test_an_unknown_source_is_404(offline_api: Api) -> None:
    answer = await offline_api.http.post("/api/sources/zoho", content=b"{}")
    assert answer.status_code == 404
    assert "no source named 'zoho'" in answer.json()["detail"]


async def test_a_source_whose_secret_is_unset_is_503(
    offline_api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DULY_HUBSPOT_CLIENT_SECRET")
    answer = await post_hubspot(offline_api, [hubspot_event(106)])
    assert answer.status_code == 503
    assert "set DULY_HUBSPOT_CLIENT_SECRET" in answer.json()["detail"]


async def test_salesforce_from_an_org_not_allowed_is_401(offline_api: Api) -> None:
    body = outbound_message([("04l000000000001", "Case", {"Id": "500A"})], org="00D999999999999AAA")
    answer = await offline_api.http.post(
        "/api/sources/salesforce", content=body, headers={"Content-Type": "text/xml"}
    )
    assert answer.status_code == 401
    assert "not in the source's organization_ids" in answer.json()["detail"]
    doctype = b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><x>&a;</x>'
    answer = await offline_api.http.post(
        "/api/sources/salesforce", content=doctype, headers={"Content-Type": "text/xml"}
    )
    assert answer.status_code == 400
    assert nothing_recorded(offline_api)


async def test_a_salesforce_flow_callout_needs_its_shared_secret(offline_api: Api) -> None:
    body = json.dumps({"object": "Lead", "id": "x", "record": {"Id": "00Q1"}}).encode()
    headers = {"Content-Type": "application/json", "X-Duly-Secret": "guess"}
    answer = await offline_api.http.post("/api/sources/salesforce", content=body, headers=headers)
    assert answer.status_code == 401


async def test_pipedrive_without_its_basic_credentials_is_401(offline_api: Api) -> None:
    body = json.dumps({"meta": {"id": "m1", "entity": "deal", "action": "change"}}).encode()
    answer = await offline_api.http.post(
        "/api/sources/pipedrive", content=body, headers=basic("duly:wrong")
    )
    assert answer.status_code == 401
    v1 = json.dumps({"meta": {"v": 1, "action": "updated", "object": "deal"}}).encode()
    answer = await offline_api.http.post("/api/sources/pipedrive", content=v1, headers=basic())
    assert answer.status_code == 400
    assert "version 2.0" in answer.json()["detail"]


async def test_an_unreadable_occurred_time_is_422_with_the_reason(offline_api: Api) -> None:
    body = json.dumps(
        {"type": "case.opened", "timestamp": "yesterday", "data": {"case": {"id": "C-1"}}}
    ).encode()
    headers = standard_headers(body, "msg_unreadable")
    answer = await offline_api.http.post("/api/sources/webhooks", content=body, headers=headers)
    assert answer.status_code == 422
    assert "'yesterday' is not a moment" in answer.json()["detail"]
    assert nothing_recorded(offline_api)


async def test_temporal_down_is_503_so_the_crm_retries(
    definitions: Definitions, tmp_path: Path, hubspot_api: HubSpotApi
) -> None:
    async def down() -> object:
        raise RuntimeError("connection refused")

    db, _, _ = make_store(tmp_path, definitions)
    app = create_app(Settings(data_dir=tmp_path), definitions, engine=db, client_factory=down)  # type: ignore[arg-type]
    hubspot_api.records[("contacts", "107")] = {"firstname": "Kim"}
    body = json.dumps([hubspot_event(107)]).encode()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://duly.test"
    ) as http:
        answer = await http.post(
            "/api/sources/hubspot", content=body, headers=hubspot_v3_headers(body)
        )
    assert answer.status_code == 503
    db.dispose()


# --- delivered on the real engine ------------------------------------------------------------


async def test_a_hubspot_batch_of_new_contacts_becomes_leads_for_their_owners(
    api: Api, hubspot_api: HubSpotApi
) -> None:
    ids = [int(str(uuid.uuid4().int)[:9]) + n for n in range(3)]
    owners = {ids[0]: "90011", ids[1]: "90012", ids[2]: "77777"}  # ana, ben, nobody's
    for object_id, owner in owners.items():
        hubspot_api.records[("contacts", str(object_id))] = {
            "firstname": "Kim",
            "lastname": f"Lee {object_id}",
            "company": "Acme",
            "hubspot_owner_id": owner,
            "hs_analytics_source": "ORGANIC_SEARCH",
        }
    hubspot_api.throttle[("contacts", str(ids[1]))] = 1  # a 429 on the way, waited out
    events = [hubspot_event(object_id, event_id=n) for n, object_id in enumerate(ids)]
    before = counted("hubspot", "received")

    answer = await post_hubspot(api, events)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["accepted"] == 3 and body["duplicates"] == 0 and body["ignored"] == []
    assert counted("hubspot", "received") == before + 3

    started = {instance.split("/")[1]: instance for instance in body["instances"]}
    assert sorted(started) == sorted(str(object_id) for object_id in ids)
    assert all(instance.startswith("lead-follow-up/") for instance in started.values())
    tasks = {}
    for object_id in ids:
        tasks[object_id] = await api.open_task(started[str(object_id)], "first-call")
    assert tasks[ids[0]].assignee == "ana"
    assert tasks[ids[1]].assignee == "ben"
    # an owner id nobody has: the process's team fallback (round-robin over inbound-sales)
    assert tasks[ids[2]].assignee in ("ana", "ben", "chloe")
    assert f"Kim Lee {ids[0]}" in tasks[ids[0]].title
    assert all(auth == "Bearer hubspot-test-token" for _, auth in hubspot_api.requests)

    # HubSpot delivers the batch again: nothing new starts
    again = await post_hubspot(api, events)
    assert again.status_code == 200
    assert again.json()["accepted"] == 0 and again.json()["duplicates"] == 3
    assert again.json()["instances"] == []


async def test_hubspot_event_ids_combine_portal_type_object_event_and_time(api: Api) -> None:
    object_id = int(str(uuid.uuid4().int)[:9])
    first = hubspot_event(object_id, kind="contact.deletion", event_id=7, occurred_ms=1_000)
    # HubSpot's eventId alone is not unique: the same eventId at another time is another event
    second = hubspot_event(object_id, kind="contact.deletion", event_id=7, occurred_ms=2_000)
    answer = await post_hubspot(api, [first, second])
    assert answer.json()["accepted"] == 2
    ids = sorted(row.id for row in api.rows(InboundEvent))
    assert ids == [
        f"hubspot:62515:contact.deletion:{object_id}:7:1000",
        f"hubspot:62515:contact.deletion:{object_id}:7:2000",
    ]


async def test_a_salesforce_outbound_message_is_acknowledged_as_soap(api: Api) -> None:
    case_id = "500" + uuid.uuid4().hex[:15]
    fields = {
        "Id": case_id,
        "Subject": "Printer on fire",
        "Priority": "High",
        "OwnerId": "005000000000021AAA",  # dev
        "SuppliedName": "Lee Park",
        "SuppliedEmail": "lee@example.com",
        "IsClosed": "false",
        "CreatedDate": recently(),
        "LastModifiedDate": recently(),
    }
    notification = "04l" + uuid.uuid4().hex[:15]
    body = outbound_message([(notification, "Case", fields)])
    headers = {"Content-Type": "text/xml; charset=utf-8", "SOAPAction": '""'}
    answer = await api.http.post("/api/sources/salesforce", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/xml")
    assert "<Ack>true</Ack>" in answer.text
    assert 'xmlns="http://soap.sforce.com/2005/09/outbound"' in answer.text
    (row,) = api.rows(InboundEvent, InboundEvent.id == f"salesforce:{notification}")
    assert row.instance_id.startswith(f"support-case/{case_id}/")
    task = await api.open_task(row.instance_id)
    assert task.assignee == "dev"
    assert row.data["case"]["priority"] == "high"


async def test_a_salesforce_flow_callout_with_its_secret_is_delivered(api: Api) -> None:
    lead_id = "00Q" + uuid.uuid4().hex[:15]
    item = {
        "object": "Lead",
        "id": f"{lead_id}-1",
        "change": "created",
        "record": {"Id": lead_id, "FirstName": "Ada", "LastName": "King", "IsConverted": "false"},
    }
    headers = {"Content-Type": "application/json", "X-Duly-Secret": SALESFORCE_SECRET}
    answer = await api.http.post(
        "/api/sources/salesforce", content=json.dumps(item).encode(), headers=headers
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 1
    (instance,) = answer.json()["instances"]
    assert instance.startswith(f"lead-follow-up/{lead_id}/")


async def test_a_pipedrive_v2_deal_change_starts_a_quote(api: Api) -> None:
    deal = int(str(uuid.uuid4().int)[:8])
    body = json.dumps(
        {
            "data": {
                "id": deal,
                "title": "Acme renewal",
                "value": 12000,
                "stage_id": 4,
                "owner_id": 1,
            },
            "previous": {"stage_id": 3},
            "meta": {
                "action": "change",
                "entity": "deal",
                "entity_id": str(deal),
                "id": str(uuid.uuid4()),
                "timestamp": recently(),
                "version": "2.0",
            },
        }
    ).encode()
    answer = await api.http.post("/api/sources/pipedrive", content=body, headers=basic())
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 1
    (instance,) = answer.json()["instances"]
    assert instance.startswith(f"quote-follow-up/pd-{deal}/")
    task = await api.open_task(instance)
    assert task.assignee in ("ana", "ben", "chloe")  # owner 1 is nobody's: the team fallback


async def test_standard_webhooks_and_duly_relays_are_delivered(api: Api) -> None:
    case = {"id": f"C-{uuid.uuid4().hex[:8]}", "priority": "urgent", "subject": "Down"}
    body = json.dumps(
        {
            "type": "case.opened",
            "timestamp": recently(),
            "data": {"case": case, "owner": "x"},
        }
    ).encode()
    answer = await api.http.post(
        "/api/sources/webhooks",
        content=body,
        headers=standard_headers(body, "msg_" + uuid.uuid4().hex),
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 1
    assert answer.json()["instances"][0].startswith(f"support-case/{case['id']}/")

    from duly.services.signing import signed_headers

    from .conftest import DULY_SECRET

    lead = {"id": f"L-{uuid.uuid4().hex[:8]}", "name": "Kim", "source": "web"}
    event = {
        "id": str(uuid.uuid4()),
        "type": "lead.created",
        "data": {"lead": lead, "hubspot_owner": "90013"},
    }
    raw = json.dumps(event).encode()
    answer = await api.http.post(
        "/api/sources/relay", content=raw, headers=signed_headers(DULY_SECRET, raw)
    )
    assert answer.status_code == 200, answer.text
    (instance,) = answer.json()["instances"]
    assert (await api.open_task(instance)).assignee == "chloe"


async def test_hubspot_without_url_signs_the_url_it_reached(api: Api) -> None:
    object_id = int(str(uuid.uuid4().int)[:9])
    body = json.dumps([hubspot_event(object_id)]).encode()
    headers = hubspot_v3_headers(body, url="http://duly.test/api/sources/hubspot-direct")
    answer = await api.http.post("/api/sources/hubspot-direct", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 1
    # the source's url would be another: a signature over it is refused here
    wrong = hubspot_v3_headers(body, url=HUBSPOT_URL)
    answer = await api.http.post("/api/sources/hubspot-direct", content=body, headers=wrong)
    assert answer.status_code == 401


async def test_a_hubspot_workflow_webhook_signed_v2_is_taken_when_the_source_allows(
    api: Api,
) -> None:
    object_id = int(str(uuid.uuid4().int)[:9])
    body = json.dumps(
        {
            "vid": object_id,
            "properties": {
                "firstname": {"value": "Ada"},
                "hubspot_owner_id": {"value": "90012"},
            },
        }
    ).encode()
    url = "http://duly.test/api/sources/hubspot-direct"
    # v2, as HubSpot documents it: hex SHA-256 (no HMAC) of secret + method + URI + body
    v2 = hashlib.sha256(HUBSPOT_SECRET.encode() + b"POST" + url.encode() + body).hexdigest()
    headers = {
        "X-HubSpot-Signature": v2,
        "X-HubSpot-Signature-Version": "v2",
        "Content-Type": "application/json",
    }
    answer = await api.http.post("/api/sources/hubspot-direct", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    (instance,) = answer.json()["instances"]
    assert (await api.open_task(instance)).assignee == "ben"
    # the shipped source takes v3 only: the same request is refused there
    refused = await api.http.post("/api/sources/hubspot", content=body, headers=headers)
    assert refused.status_code == 401


async def test_a_records_changes_in_one_batch_arrive_in_order(
    api: Api, hubspot_api: HubSpotApi
) -> None:
    object_id = int(str(uuid.uuid4().int)[:9])
    hubspot_api.records[("contacts", str(object_id))] = {"firstname": "Kim"}
    created = hubspot_event(object_id, event_id=1)
    deleted = hubspot_event(object_id, kind="contact.deletion", event_id=2)
    answer = await post_hubspot(api, [created, deleted])
    assert answer.status_code == 200, answer.text
    assert answer.json()["accepted"] == 2
    instance_id = answer.json()["instances"][0]
    # the deletion reached the instance the creation started: it ended (lead.deleted: closed)
    ended = await api.until(
        lambda: (row := api.row(Instance, instance_id)) is not None and row.status != "running",
        "the lead's instance ending",
    )
    assert ended


async def test_odd_values_in_signed_bodies_get_clear_answers_never_500(offline_api: Api) -> None:
    odd = hubspot_event(108, kind="company.creation", occurredAt=10**30, objectId={"a": 1})
    answer = await post_hubspot(offline_api, [odd])
    assert answer.status_code == 200, answer.text
    assert answer.json()["ignored"] == ["object type 'company' is not mapped by source 'hubspot'"]

    listed = {"data": [1, 2], "meta": {"id": "m-odd", "entity": "person", "action": "change"}}
    body = json.dumps(listed).encode()
    answer = await offline_api.http.post("/api/sources/pipedrive", content=body, headers=basic())
    assert answer.status_code == 200, answer.text
    assert answer.json()["ignored"] == ["object type 'person' is not mapped by source 'pipedrive'"]

    far = {"type": "case.opened", "timestamp": 10**30, "data": {"case": {"id": "C-odd"}}}
    body = json.dumps(far).encode()
    answer = await offline_api.http.post(
        "/api/sources/webhooks", content=body, headers=standard_headers(body, "msg_far")
    )
    assert answer.status_code == 422, answer.text
    assert "is not a moment in Unix time" in answer.json()["detail"]
    assert nothing_recorded(offline_api)
