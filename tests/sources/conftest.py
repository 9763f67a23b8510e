"""Sources under test: secrets in the environment, a local HubSpot CRM API, extra test sources.

The API fixtures (`api` on the time-skipping server with a real worker, `offline_api` without
Temporal) are the ones tests/api uses, here with the shipped definitions plus a Pipedrive, a
Standard Webhooks and a duly source.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from api.conftest import Api, api, offline_api  # noqa: F401  (fixtures used here)

from duly.language.loader import Definitions
from duly.language.sources import SourceSpec

HUBSPOT_SECRET = "hubspot-client-secret-" + "h" * 16
HUBSPOT_URL = "https://duly.example.com/api/sources/hubspot"
SALESFORCE_SECRET = "salesforce-shared-" + "s" * 16
SALESFORCE_ORG = "00D000000000001AAA"
PIPEDRIVE_CREDENTIALS = "duly:pipedrive-password"
STANDARD_SECRET = "whsec_" + base64.b64encode(b"standard-webhooks-key-32-bytes!!").decode()
DULY_SECRET = "duly-source-secret-" + "d" * 16

TEST_SOURCES: list[dict[str, Any]] = [
    {
        "source": "pipedrive",
        "crm": "pipedrive",
        "secret": "DULY_PIPEDRIVE_CREDENTIALS",
        "objects": {
            "deal": {
                "events": [
                    {
                        "when": "change == 'updated' and record.stage_id == 4",
                        "type": "quote.sent",
                        "owner": "{{ record.owner_id }}",
                        "data": {
                            "quote": {
                                "id": "pd-{{ object_id }}",
                                "number": "{{ record.title }}",
                                "amount": "{{ record.value }}",
                            },
                            "contact": {"name": "Lee Park", "email": "lee@example.com"},
                        },
                    }
                ]
            }
        },
    },
    {
        "source": "webhooks",
        "crm": "standard-webhooks",
        "secret": "DULY_STANDARD_SECRET",
        "objects": {
            "case.opened": {
                "events": [
                    {
                        "type": "case.opened",
                        "data": {"case": "{{ record.case }}"},
                        "owner": "{{ record.owner }}",
                    }
                ]
            }
        },
    },
    {
        "source": "relay",
        "crm": "duly",
        "secret": "DULY_RELAY_SECRET",
        "owners": "hubspot",
        "objects": {
            "lead.created": {
                "events": [
                    {
                        "type": "lead.created",
                        "owner": "{{ record.hubspot_owner }}",
                        "data": {"lead": "{{ record.lead }}"},
                    }
                ]
            }
        },
    },
    {
        # HubSpot without `url`: the URL the request reached is the one signed
        "source": "hubspot-direct",
        "crm": "hubspot",
        "secret": "DULY_HUBSPOT_CLIENT_SECRET",
        "accept_v2": True,
        "objects": {
            "contact": {
                "events": [
                    {
                        "when": "change == 'created'",
                        "type": "lead.created",
                        "data": {"lead": {"id": "hs-{{ object_id }}", "source": "web"}},
                    },
                    {
                        "when": "change == 'workflow'",
                        "type": "lead.created",
                        "owner": "{{ record.hubspot_owner_id }}",
                        "data": {
                            "lead": {
                                "id": "hs-{{ object_id }}",
                                "name": "{{ record.firstname }}",
                                "source": "web",
                            }
                        },
                    },
                ]
            }
        },
    },
]


@pytest.fixture
def definitions(definitions: Definitions) -> Definitions:
    """The shipped definitions with the test sources added."""
    sources = dict(definitions.sources)
    for raw in TEST_SOURCES:
        spec = SourceSpec.model_validate(raw)
        sources[spec.source] = spec
    return dataclasses.replace(definitions, sources=sources)


class HubSpotApi:
    """A local HubSpot CRM API: GET /crm/v3/objects/<type>/<id>, with 429s when asked."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], dict[str, Any]] = {}
        self.throttle: dict[tuple[str, str], int] = {}  # 429s to answer before the record
        self.failing: dict[tuple[str, str], int] = {}  # 503s to answer before the record
        self.retry_after = "0"
        self.requests: list[tuple[str, str | None]] = []
        served = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                served.requests.append((self.path, self.headers.get("Authorization")))
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:3] != ["crm", "v3", "objects"] or len(parts) != 5:
                    self._answer(404, {"message": "not found"})
                    return
                if self.headers.get("Authorization") != "Bearer hubspot-test-token":
                    self._answer(401, {"message": "bad token"})
                    return
                key = (parts[3], parts[4])
                if served.throttle.get(key, 0) > 0:
                    served.throttle[key] -= 1
                    self._answer(
                        429, {"message": "rate limited"}, {"Retry-After": served.retry_after}
                    )
                    return
                if served.failing.get(key, 0) > 0:
                    served.failing[key] -= 1
                    self._answer(503, {"message": "unavailable"})
                    return
                if key not in served.records:
                    self._answer(404, {"message": "no such record"})
                    return
                self._answer(200, {"id": parts[4], "properties": served.records[key]})

            def _answer(
                self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
            ) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def hubspot_api() -> Iterator[HubSpotApi]:
    """The local HubSpot CRM API, serving while the test runs."""
    served = HubSpotApi()
    thread = threading.Thread(target=served.server.serve_forever, daemon=True)
    thread.start()
    yield served
    served.server.shutdown()
    served.server.server_close()
    thread.join()


@pytest.fixture(autouse=True)
def source_secrets(monkeypatch: pytest.MonkeyPatch, hubspot_api: HubSpotApi) -> None:
    """Every source's secret in the environment, and HubSpot's API pointed at the local one."""
    monkeypatch.setenv("DULY_HUBSPOT_CLIENT_SECRET", HUBSPOT_SECRET)
    monkeypatch.setenv("DULY_SALESFORCE_SECRET", SALESFORCE_SECRET)
    monkeypatch.setenv("DULY_PIPEDRIVE_CREDENTIALS", PIPEDRIVE_CREDENTIALS)
    monkeypatch.setenv("DULY_STANDARD_SECRET", STANDARD_SECRET)
    monkeypatch.setenv("DULY_RELAY_SECRET", DULY_SECRET)
    monkeypatch.setenv("DULY_HUBSPOT_TOKEN", "hubspot-test-token")
    monkeypatch.setenv("DULY_HUBSPOT_API_URL", hubspot_api.url)


# --- signing as each CRM documents it (written apart from duly's verifiers) -------------------


def hubspot_v3_headers(
    body: bytes, *, url: str = HUBSPOT_URL, now_ms: int | None = None, secret: str = HUBSPOT_SECRET
) -> dict[str, str]:
    """HubSpot's v3 headers: base64 HMAC-SHA256 of method + URI + body + timestamp (ms)."""
    timestamp = str(int(time.time() * 1000) if now_ms is None else now_ms)
    signed = ("POST" + url + body.decode() + timestamp).encode()
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).digest()
    return {
        "X-HubSpot-Signature-v3": base64.b64encode(digest).decode(),
        "X-HubSpot-Request-Timestamp": timestamp,
        "Content-Type": "application/json",
    }


def standard_headers(body: bytes, message_id: str, *, now: int | None = None) -> dict[str, str]:
    """Standard Webhooks headers: v1,<base64 HMAC-SHA256 of id.timestamp.body>."""
    timestamp = str(int(time.time()) if now is None else now)
    key = base64.b64decode(STANDARD_SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
        "Content-Type": "application/json",
    }


def basic(credentials: str = PIPEDRIVE_CREDENTIALS) -> dict[str, str]:
    """Pipedrive's HTTP Basic header for the webhook's user:password."""
    return {"Authorization": "Basic " + base64.b64encode(credentials.encode()).decode()}


def hubspot_event(
    object_id: int,
    *,
    kind: str = "contact.creation",
    event_id: int = 1,
    occurred_ms: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """One event of a HubSpot webhook batch, in the documented shape."""
    return {
        "eventId": event_id,
        "subscriptionId": 12345,
        "portalId": 62515,
        "appId": 54321,
        "occurredAt": int(time.time() * 1000) if occurred_ms is None else occurred_ms,
        "subscriptionType": kind,
        "attemptNumber": 0,
        "objectId": object_id,
        "changeSource": "CRM",
        "changeFlag": "NEW",
        **extra,
    }


def outbound_message(
    notifications: list[tuple[str, str, dict[str, str]]], org: str = SALESFORCE_ORG
) -> bytes:
    """A Salesforce Outbound Message: (notification Id, sObject type, fields) each."""
    parts = []
    for notification_id, kind, fields in notifications:
        body = "".join(f"<sf:{name}>{value}</sf:{name}>" for name, value in fields.items())
        parts.append(
            f"<Notification><Id>{notification_id}</Id>"
            f'<sObject xsi:type="sf:{kind}" xmlns:sf="urn:sobject.enterprise.soap.sforce.com">'
            f"{body}</sObject></Notification>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
        'xmlns:xsd="http://www.w3.org/2001/XMLSchema" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">'
        "<soapenv:Body>"
        '<notifications xmlns="http://soap.sforce.com/2005/09/outbound">'
        f"<OrganizationId>{org}</OrganizationId>"
        "<ActionId>04k000000000001AAA</ActionId>"
        '<SessionId xsi:nil="true"/>'
        "<EnterpriseUrl>https://example.my.salesforce.com/services/Soap/c/60.0/00D</EnterpriseUrl>"
        "<PartnerUrl>https://example.my.salesforce.com/services/Soap/u/60.0/00D</PartnerUrl>"
        + "".join(parts)
        + "</notifications></soapenv:Body></soapenv:Envelope>"
    ).encode()
