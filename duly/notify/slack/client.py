"""The Slack Web API client duly sends and updates messages with."""

from __future__ import annotations

from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

RATE_LIMIT_RETRIES = 3


def web_client(token: str, base_url: str) -> AsyncWebClient:
    """A Web API client that waits out rate limits (429 with Retry-After) a few times.

    slack_sdk retries only connection errors by default; a 429 is retried only with
    `AsyncRateLimitErrorRetryHandler` added. `base_url` is `DULY_SLACK_API_URL`.
    """
    return AsyncWebClient(
        token=token,
        base_url=base_url,
        timeout=10,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)],
    )
