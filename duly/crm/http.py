"""One HTTP call to a CRM, its answer sorted into what a retry can and cannot fix.

CRMs name their limits differently: HubSpot and Pipedrive answer 429 with `Retry-After`,
Salesforce answers 403 with the error code `REQUEST_LIMIT_EXCEEDED`. Both become `RateLimited`
(with the wait the CRM asked for, when it said); 5xx and network failures are `Unavailable`;
any other 4xx is `Refused`: a wrong field name or record id, which no retry fixes.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

TIMEOUT_SECONDS = 30.0
MAX_RETRY_AFTER = timedelta(minutes=10)


class CrmError(Exception):
    """A CRM call failed; the message says which call and what the CRM answered."""


class RateLimited(CrmError):
    """The CRM asks duly to slow down; `retry_after` is its wait, when it gave one."""

    def __init__(self, message: str, retry_after: timedelta | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(CrmError):
    """The CRM failed (5xx) or could not be reached: a retry may succeed."""


class Refused(CrmError):
    """The CRM refused the request itself (4xx): fix the definition or the settings."""


class NotConfigured(CrmError):
    """duly lacks the CRM's credentials (a `DULY_*` setting)."""


def retry_after(value: str | None, now: datetime | None = None) -> timedelta | None:
    """`Retry-After` as a wait: seconds, or an HTTP date; capped, None when absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        wait = timedelta(seconds=int(value))
    else:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        wait = moment - (now or datetime.now(UTC))
    return min(max(wait, timedelta(0)), MAX_RETRY_AFTER)


def call(
    crm: str,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    json: Any = None,
    params: dict[str, Any] | None = None,
) -> httpx.Response:
    """Make one request; return a 2xx answer, raise a `CrmError` for anything else."""
    what = f"{crm} {method} {httpx.URL(url).path}"
    try:
        response = httpx.request(
            method, url, headers=headers, json=json, params=params, timeout=TIMEOUT_SECONDS
        )
    except httpx.HTTPError as exc:
        raise Unavailable(f"{what}: {type(exc).__name__}: {exc}") from exc
    if response.is_success:
        return response
    said = f"{what} answered {response.status_code}: {response.text[:300]}"
    if response.status_code == 429 or _salesforce_limit(response):
        raise RateLimited(said, retry_after(response.headers.get("Retry-After")))
    if response.status_code >= 500 or response.status_code == 408:
        raise Unavailable(said)
    raise Refused(said)


def _salesforce_limit(response: httpx.Response) -> bool:
    if response.status_code != 403:
        return False
    try:
        body = response.json()
    except ValueError:
        return False
    errors = body if isinstance(body, list) else [body]
    return any(
        isinstance(error, dict) and error.get("errorCode") == "REQUEST_LIMIT_EXCEEDED"
        for error in errors
    )
