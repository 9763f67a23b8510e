"""Reading HubSpot records for fields a webhook lacks: a local server answering HubSpot's API."""

from __future__ import annotations

import httpx
import pytest

from duly.sources import hubspot_api
from duly.sources.hubspot_api import FetchError, fetch_properties

from .conftest import HubSpotApi


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits between attempts, recorded instead of slept."""
    recorded: list[float] = []

    async def wait(seconds: float) -> None:
        recorded.append(seconds)

    monkeypatch.setattr(hubspot_api, "sleep", wait)
    return recorded


async def test_a_record_is_read_with_the_private_app_token(hubspot_api: HubSpotApi) -> None:
    hubspot_api.records[("contacts", "11")] = {"firstname": "Kim", "hubspot_owner_id": "90011"}
    async with httpx.AsyncClient() as client:
        found = await fetch_properties(client, "contact", "11", ["firstname", "hubspot_owner_id"])
    assert found == {"firstname": "Kim", "hubspot_owner_id": "90011"}
    ((path, auth),) = hubspot_api.requests
    assert path == "/crm/v3/objects/contacts/11?properties=firstname%2Chubspot_owner_id"
    assert auth == "Bearer hubspot-test-token"


async def test_429_waits_as_retry_after_says(hubspot_api: HubSpotApi, waits: list[float]) -> None:
    hubspot_api.records[("deals", "12")] = {"dealstage": "closedwon"}
    hubspot_api.throttle[("deals", "12")] = 2
    hubspot_api.retry_after = "3"
    async with httpx.AsyncClient() as client:
        found = await fetch_properties(client, "deal", "12", ["dealstage"])
    assert found == {"dealstage": "closedwon"}
    assert waits == [3.0, 3.0]


async def test_5xx_is_tried_again_then_given_up_for_the_crm_to_resend(
    hubspot_api: HubSpotApi, waits: list[float]
) -> None:
    hubspot_api.records[("contacts", "13")] = {"firstname": "Ada"}
    hubspot_api.failing[("contacts", "13")] = 1
    async with httpx.AsyncClient() as client:
        assert await fetch_properties(client, "contact", "13", ["firstname"]) == {
            "firstname": "Ada"
        }
        hubspot_api.failing[("contacts", "13")] = 100
        with pytest.raises(FetchError, match="answered 503") as refused:
            await fetch_properties(client, "contact", "13", ["firstname"])
    assert refused.value.retry  # the webhook is answered 503: HubSpot delivers it again


async def test_a_deleted_record_reads_as_empty_and_a_bad_token_is_said(
    hubspot_api: HubSpotApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with httpx.AsyncClient() as client:
        assert await fetch_properties(client, "contact", "404", ["firstname"]) == {}
        monkeypatch.setenv("DULY_HUBSPOT_TOKEN", "revoked")
        with pytest.raises(FetchError, match="HubSpot refused DULY_HUBSPOT_TOKEN"):
            await fetch_properties(client, "contact", "1", ["firstname"])
        monkeypatch.delenv("DULY_HUBSPOT_TOKEN")
        with pytest.raises(FetchError, match="DULY_HUBSPOT_TOKEN is not set"):
            await fetch_properties(client, "contact", "1", ["firstname"])
