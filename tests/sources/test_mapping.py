"""CRM payloads in their documented shapes, through the shipped sources' rules."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from duly.client import business_key, listens_to
from duly.language.loader import Definitions, load_definitions
from duly.sources import parse
from duly.sources.changes import Change
from duly.sources.mapping import Ignored, MappingError, map_change, parse_moment, render_data

from .conftest import hubspot_event, outbound_message

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def shipped() -> Definitions:
    return load_definitions(ROOT / "definitions")


def change(obj: str, kind: str, record: dict[str, object], **extra: object) -> Change:
    return Change(
        object=obj,
        object_id="4242",
        change=kind,
        key="k-1",
        occurred_at="2026-12-01T14:05:00+00:00",
        record=record,
        raw=dict(extra),
    )


def test_every_shipped_rule_reaches_a_process_by_its_key(shipped: Definitions) -> None:
    """Each event a shipped source makes starts a process, or reaches one by the same key."""
    for source in shipped.sources.values():
        for name, rules in source.objects.items():
            for rule in rules.events:
                processes = [
                    p
                    for p in shipped.processes.values()
                    if (p.spec.trigger and rule.type in p.spec.trigger.types)
                    or listens_to(p, rule.type)
                ]
                assert processes, f"{source.source}: no process takes {rule.type}"
                # the key a process routes by comes out of the rule's data as the record id
                sample = change(name, "imported", {}, propertyName="dealstage")
                context = sample.context()
                data = render_data(rule.data, context)
                for process in processes:
                    assert business_key(process, data).endswith("4242"), (source.source, rule.type)


def test_a_hubspot_contact_creation_becomes_a_lead_for_its_mapped_owner(
    shipped: Definitions,
) -> None:
    (created,) = parse.hubspot(
        json.dumps([hubspot_event(4242, occurred_ms=1_764_597_900_000)]).encode()
    )
    created.record = {
        "firstname": "Kim",
        "lastname": "Lee",
        "company": "Acme",
        "hubspot_owner_id": "90012",
        "hs_analytics_source": "REFERRALS",
    }
    event = map_change(shipped.sources["hubspot"], created, shipped.org)
    assert not isinstance(event, Ignored)
    assert event.type == "lead.created"
    assert event.id == "hubspot:62515:contact.creation:4242:1:1764597900000"
    assert event.occurred_at == datetime(2025, 12, 1, 14, 5, tzinfo=UTC)
    assert event.data == {
        "lead": {
            "id": "4242",
            "name": "Kim Lee",
            "company": "Acme",
            "email": "",
            "source": "referral",
        },
        "owner": "ben",
    }


def test_an_unmapped_owner_leaves_owner_empty_for_the_fallback(shipped: Definitions) -> None:
    created = change("contact", "created", {"hubspot_owner_id": "31337"})
    event = map_change(shipped.sources["hubspot"], created, shipped.org)
    assert not isinstance(event, Ignored)
    assert "owner" not in event.data


def test_a_deal_reaching_the_quote_stage_is_a_quote_with_a_numeric_amount(
    shipped: Definitions,
) -> None:
    (moved,) = parse.hubspot(
        json.dumps(
            [
                hubspot_event(
                    4242,
                    kind="deal.propertyChange",
                    propertyName="dealstage",
                    propertyValue="contractsent",
                )
            ]
        ).encode()
    )
    moved.record = {
        "amount": "65000.50",
        "dealname": "Q-77",
        "hubspot_owner_id": "90011",
        **moved.record,
    }
    event = map_change(shipped.sources["hubspot"], moved, shipped.org)
    assert not isinstance(event, Ignored)
    assert event.type == "quote.sent"
    assert event.data["quote"] == {"id": "4242", "number": "Q-77", "amount": 65000.5}
    assert event.data["owner"] == "ana"
    # another property of the same deal changing is not a new quote
    (other,) = parse.hubspot(
        json.dumps(
            [
                hubspot_event(
                    4242, kind="deal.propertyChange", propertyName="amount", propertyValue="1"
                )
            ]
        ).encode()
    )
    other.record = {"dealstage": "contractsent", **other.record}
    assert isinstance(map_change(shipped.sources["hubspot"], other, shipped.org), Ignored)


def test_generic_hubspot_subscriptions_name_the_object_by_type_id() -> None:
    (item,) = parse.hubspot(
        json.dumps([hubspot_event(9, kind="object.creation", objectTypeId="0-3")]).encode()
    )
    assert (item.object, item.change) == ("deal", "created")


def test_salesforce_notifications_read_their_fields_and_change(shipped: Definitions) -> None:
    body = outbound_message(
        [
            (
                "04l1",
                "Lead",
                {
                    "Id": "00Q1",
                    "FirstName": "Ada",
                    "LastName": "King",
                    "OwnerId": "005000000000013AAA",
                    "IsConverted": "false",
                    "CreatedDate": "2026-12-01T14:05:00.000Z",
                    "LastModifiedDate": "2026-12-01T14:05:00.000Z",
                },
            ),
            (
                "04l2",
                "Lead",
                {
                    "Id": "00Q2",
                    "IsConverted": "true",
                    "LastModifiedDate": "2026-12-02T09:00:00.000Z",
                },
            ),
            ("04l3", "Account", {"Id": "0011"}),
        ]
    )
    organization, changes = parse.salesforce_outbound(body)
    assert organization == "00D000000000001AAA"
    created, converted, account = (
        map_change(shipped.sources["salesforce"], c, shipped.org) for c in changes
    )
    assert not isinstance(created, Ignored) and not isinstance(converted, Ignored)
    assert (created.type, created.id, created.data["owner"]) == (
        "lead.created",
        "salesforce:04l1",
        "chloe",
    )
    assert converted.type == "lead.converted"
    assert converted.occurred_at == datetime(2026, 12, 2, 9, tzinfo=UTC)
    assert account == Ignored("object type 'Account' is not mapped by source 'salesforce'")


def test_a_change_no_rule_takes_is_ignored(shipped: Definitions) -> None:
    updated = change("Case", "updated", {"IsClosed": "false"})
    assert map_change(shipped.sources["salesforce"], updated, shipped.org) == Ignored(
        "no rule of 'Case' takes this change (updated)"
    )


def test_pipedrive_v2_reads_meta() -> None:
    body = {
        "data": {"id": 7, "title": "Deal"},
        "previous": None,
        "meta": {
            "action": "delete",
            "entity": "deal",
            "entity_id": "7",
            "id": "8a0e0a4c-0d6e-4f8e-9d8a-2c1e1f2b3c4d",
            "timestamp": "2026-12-01T14:05:00.000Z",
            "version": "2.0",
        },
    }
    (item,) = parse.pipedrive(json.dumps(body).encode())
    assert (item.object, item.object_id, item.change, item.key) == (
        "deal",
        "7",
        "deleted",
        "8a0e0a4c-0d6e-4f8e-9d8a-2c1e1f2b3c4d",
    )


def test_moments_in_iso_seconds_or_milliseconds() -> None:
    assert parse_moment("2026-12-01T14:05:00Z") == datetime(2026, 12, 1, 14, 5, tzinfo=UTC)
    assert parse_moment("2026-12-01T14:05:00") == datetime(2026, 12, 1, 14, 5, tzinfo=UTC)
    assert parse_moment(1764597900) == parse_moment(1764597900000)
    with pytest.raises(MappingError, match="not a moment"):
        parse_moment("last tuesday")
