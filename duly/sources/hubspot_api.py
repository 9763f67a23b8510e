"""Read a HubSpot record's properties from its CRM API, for fields a webhook does not carry.

HubSpot's webhooks name the record and what changed, not its other fields (a contact's name,
owner, source). A source lists the properties it needs under `fetch:`; they are read with a
private app's token (`DULY_HUBSPOT_TOKEN`) from `DULY_HUBSPOT_API_URL` (default
https://api.hubapi.com), the same settings as duly's CRM write-back. A 429 is waited out as its
`Retry-After` says; a 5xx is tried again; either still failing answers the webhook 503, so
HubSpot delivers it again later.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import httpx

DEFAULT_API_URL = "https://api.hubapi.com"
ATTEMPTS = 4
LONGEST_WAIT = 10.0  # seconds: HubSpot's rate limits reset within 10 s
sleep = asyncio.sleep  # the wait between attempts (tests record it rather than wait)
PLURALS = {"contact": "contacts", "company": "companies", "deal": "deals", "ticket": "tickets"}


class FetchError(Exception):
    """HubSpot's API did not give the record; the message says why and what to do."""

    def __init__(self, message: str, *, retry: bool) -> None:
        super().__init__(message)
        self.retry = retry


def api_settings() -> tuple[str, str | None]:
    """The API's base URL and the private app token, from the environment."""
    # the names duly/crm/ reads too; read at use, like a source's secret
    return (
        os.environ.get("DULY_HUBSPOT_API_URL", DEFAULT_API_URL).rstrip("/"),
        os.environ.get("DULY_HUBSPOT_TOKEN"),
    )


async def fetch_properties(
    client: httpx.AsyncClient, object_type: str, object_id: str, properties: list[str]
) -> dict[str, Any]:
    """The named properties of one record (empty when the record is gone).

    Raises:
        FetchError: No token, a refused token, or HubSpot still failing after the retries.
    """
    base, token = api_settings()
    if not token:
        raise FetchError(
            "the source fetches HubSpot records but DULY_HUBSPOT_TOKEN is not set: give it a "
            "private app's access token with the crm.objects.*.read scopes",
            retry=True,
        )
    url = f"{base}/crm/v3/objects/{PLURALS.get(object_type, object_type)}/{object_id}"
    params = {"properties": ",".join(properties)}
    headers = {"Authorization": f"Bearer {token}"}
    last = ""
    for attempt in range(ATTEMPTS):
        try:
            answer = await client.get(url, params=params, headers=headers)
        except httpx.HTTPError as exc:
            last = f"HubSpot's API did not answer: {exc}"
            await sleep(min(2**attempt * 0.1, LONGEST_WAIT))
            continue
        if answer.status_code == 200:
            body = answer.json()
            found = body.get("properties") if isinstance(body, dict) else None
            return dict(found) if isinstance(found, dict) else {}
        if answer.status_code == 404:
            return {}
        if answer.status_code in (401, 403):
            raise FetchError(
                f"HubSpot refused DULY_HUBSPOT_TOKEN ({answer.status_code}): check the private "
                "app's token and its read scopes",
                retry=True,
            )
        if answer.status_code == 429 or answer.status_code >= 500:
            last = f"HubSpot's API answered {answer.status_code}"
            await sleep(_wait(answer, attempt))
            continue
        raise FetchError(
            f"HubSpot's API answered {answer.status_code} for {object_type} {object_id}",
            retry=False,
        )
    raise FetchError(f"{last}; the webhook is answered 503 so HubSpot sends it again", retry=True)


def _wait(answer: httpx.Response, attempt: int) -> float:
    """Seconds to wait before the next attempt: Retry-After when given, else backing off."""
    given = answer.headers.get("Retry-After", "")
    try:
        return min(max(float(given), 0.0), LONGEST_WAIT)
    except ValueError:
        return float(min(2**attempt * 0.1, LONGEST_WAIT))
