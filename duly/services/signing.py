"""Signed inbound events: HMAC-SHA256 over `<timestamp>.<body>` with a shared secret.

A sender puts the current Unix time (seconds) in `X-Duly-Timestamp` and
`sha256=<hex HMAC-SHA256 of f"{timestamp}.{body}">` in `X-Duly-Signature`. Signing the
timestamp with the body lets duly refuse a captured request replayed later: a request whose
timestamp is more than `REPLAY_WINDOW` away from duly's clock is refused even when its signature
is right. (The same scheme as Stripe's and Slack's webhooks, so the usual relay code fits; and
the same as duly's own outbound webhooks, notifications and the `webhook` action, all made by
`duly.signing.sign`.)
"""

from __future__ import annotations

import hmac
import time

from duly.signing import SIGNATURE_HEADER as SIGNATURE_HEADER
from duly.signing import TIMESTAMP_HEADER as TIMESTAMP_HEADER
from duly.signing import sign

REPLAY_WINDOW = 300
"""Seconds a signed request stays acceptable, either side of duly's clock."""
SCHEME = "sha256="


class SignatureError(Exception):
    """A request is unsigned, badly signed or too old; the message says which."""


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Duly-Signature` value for a body sent at `timestamp`.

    Args:
        secret: The shared secret (`DULY_EVENTS_SECRET`).
        timestamp: The `X-Duly-Timestamp` value, Unix seconds as text.
        body: The exact bytes of the request body.

    Returns:
        `sha256=<hex digest>`.
    """
    return sign(secret, timestamp, body)  # one scheme for inbound events and outbound webhooks


def signed_headers(secret: str, body: bytes, *, now: float | None = None) -> dict[str, str]:
    """The headers that sign `body` now: what a sender (or a test) adds to its request."""
    timestamp = str(int(time.time() if now is None else now))
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: signature(secret, timestamp, body),
        "Content-Type": "application/json",
    }


def verify(
    secret: str,
    timestamp: str | None,
    given: str | None,
    body: bytes,
    *,
    now: float | None = None,
    window: int = REPLAY_WINDOW,
) -> None:
    """Check a request's signature and age.

    Args:
        secret: The shared secret.
        timestamp: The `X-Duly-Timestamp` header, if sent.
        given: The `X-Duly-Signature` header, if sent.
        body: The exact bytes of the request body.
        now: The current Unix time; defaults to the clock.
        window: Seconds a request stays acceptable, either side of `now`.

    Raises:
        SignatureError: A header is missing or malformed, the timestamp is outside the window,
            or the signature does not match.
    """
    if not timestamp or not given:
        raise SignatureError(
            f"unsigned request: send {TIMESTAMP_HEADER} (Unix seconds) and "
            f"{SIGNATURE_HEADER}: {SCHEME}<hex HMAC-SHA256 of '<timestamp>.<body>'> "
            "(see docs/events.md)"
        )
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError(f"{TIMESTAMP_HEADER} must be Unix time in whole seconds")
    age = (time.time() if now is None else now) - int(timestamp)
    if abs(age) > window:
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is {abs(int(age))} s {'old' if age > 0 else 'ahead'}, outside the "
            f"{window} s replay window: sign each request when it is sent (and check the "
            "sender's clock)"
        )
    # as bytes: compare_digest refuses non-ASCII text, and a header may carry any
    if not hmac.compare_digest(signature(secret, timestamp, body).encode(), given.strip().encode()):
        raise SignatureError(
            f"{SIGNATURE_HEADER} does not match the body: sign '<timestamp>.<raw body>' with "
            "the shared secret (DULY_EVENTS_SECRET)"
        )
