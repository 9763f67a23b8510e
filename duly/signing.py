"""HMAC-SHA256 signatures of duly's JSON webhooks, for senders and receivers alike.

A signed request carries `X-Duly-Timestamp` (Unix seconds) and
`X-Duly-Signature: sha256=<hex>`, the HMAC-SHA256 under the shared secret of
`<timestamp>.<body>`. Signing the timestamp lets a receiver refuse an old request replayed
later (`verify`'s `tolerance`); `Idempotency-Key` lets it drop a resent one.

`sign` is the one signature duly makes or checks: notifications on the JSON webhook channel,
the `webhook` action (activities/actions.py) and inbound events (`duly.services.signing`) all use
it, so a receiver written for one checks the others.
"""

from __future__ import annotations

import hashlib
import hmac
import time

SIGNATURE_HEADER = "X-Duly-Signature"
TIMESTAMP_HEADER = "X-Duly-Timestamp"
KEY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE_SECONDS = 300.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Duly-Signature` value of `body` sent at `timestamp`.

    Args:
        secret: The shared secret.
        timestamp: The `X-Duly-Timestamp` value, as sent.
        body: The request body, byte for byte.
    """
    message = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(
    secret: str,
    timestamp: str,
    body: bytes,
    signature: str,
    *,
    now: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """Whether `signature` signs `body` at `timestamp`, and `timestamp` is recent enough.

    Args:
        secret: The shared secret.
        timestamp: The request's `X-Duly-Timestamp`.
        body: The request body as received.
        signature: The request's `X-Duly-Signature`.
        now: The current Unix time; defaults to the clock.
        tolerance: How many seconds the timestamp may be from `now`, either way.
    """
    try:
        sent = float(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
