"""Each CRM's request signature, checked exactly as the CRM documents it.

- HubSpot v3: `X-HubSpot-Signature-v3` = base64(HMAC-SHA256(client secret, method + URI + body +
  timestamp)), `X-HubSpot-Request-Timestamp` in *milliseconds*, older than 5 minutes refused; the
  URI is signed with `%3A %2F %3F %40 %21 %24 %27 %28 %29 %2A %2C %3B` decoded.
  HubSpot v2 (workflow "Send a webhook", custom actions): `X-HubSpot-Signature` = *hex*
  SHA-256 (not an HMAC) of secret + method + URI + body, with no timestamp.
- Pipedrive webhooks: HTTP Basic credentials set on the webhook (Pipedrive signs nothing).
- Standard Webhooks: `webhook-signature` = space-separated `v1,<base64 HMAC-SHA256>` of
  `<webhook-id>.<webhook-timestamp>.<body>` with the base64 key after `whsec_`; timestamp in
  *seconds*, 5 minutes either side.
- Salesforce: Flow HTTP callouts carry a shared secret in a header; Outbound Messages are not
  signed at all and are checked by their OrganizationId (`parse`).
- duly: `X-Duly-Signature` as /api/events (`duly.services.signing`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time

from duly.services.signing import SignatureError
from duly.services.signing import verify as verify_duly

REPLAY_WINDOW = 300
"""Seconds a timestamped request stays acceptable, as HubSpot and Standard Webhooks document."""

_HUBSPOT_DECODED = {
    "%3A": ":",
    "%2F": "/",
    "%3F": "?",
    "%40": "@",
    "%21": "!",
    "%24": "$",
    "%27": "'",
    "%28": "(",
    "%29": ")",
    "%2A": "*",
    "%2C": ",",
    "%3B": ";",
}
_HUBSPOT_ENCODED = re.compile("|".join(_HUBSPOT_DECODED), re.IGNORECASE)

__all__ = [
    "SignatureError",
    "hubspot_signed_uri",
    "hubspot_v2",
    "hubspot_v3",
    "pipedrive_basic",
    "shared_secret",
    "standard_webhooks",
    "verify_duly",
]


def _equal(expected: str, given: str) -> bool:
    # as bytes: compare_digest refuses non-ASCII text, and a header may carry any
    return hmac.compare_digest(expected.encode(), given.strip().encode())


def _age_check(sent: int, now: float, header: str, unit: str) -> None:
    age = now - sent
    if abs(age) > REPLAY_WINDOW:
        raise SignatureError(
            f"{header} is {abs(int(age))} s {'old' if age > 0 else 'ahead'}, outside the "
            f"{REPLAY_WINDOW} s replay window (it is Unix time in {unit}; check the clocks)"
        )


def hubspot_signed_uri(uri: str) -> str:
    """The URI as HubSpot signs it: the characters its docs list are decoded, no others."""
    return _HUBSPOT_ENCODED.sub(lambda match: _HUBSPOT_DECODED[match.group(0).upper()], uri)


def hubspot_v3(
    secret: str,
    method: str,
    uri: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    now: float | None = None,
) -> None:
    """Check `X-HubSpot-Signature-v3` and its millisecond timestamp.

    Raises:
        SignatureError: A header is missing, the timestamp is stale, or the signature differs.
    """
    if not timestamp or not signature:
        raise SignatureError(
            "unsigned request: HubSpot sends X-HubSpot-Signature-v3 and "
            "X-HubSpot-Request-Timestamp; check the app's client secret and target URL"
        )
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 16:
        raise SignatureError("X-HubSpot-Request-Timestamp must be Unix time in milliseconds")
    clock = time.time() if now is None else now
    _age_check(int(timestamp) // 1000, clock, "X-HubSpot-Request-Timestamp", "milliseconds")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError(
            "the body is not UTF-8, so it cannot match a HubSpot signature"
        ) from None
    signed = f"{method.upper()}{hubspot_signed_uri(uri)}{text}{timestamp}".encode()
    expected = base64.b64encode(hmac.new(secret.encode(), signed, hashlib.sha256).digest())
    if not _equal(expected.decode(), signature):
        raise SignatureError(
            "X-HubSpot-Signature-v3 does not match: check the source's secret (the app's client "
            "secret) and its 'url' (the target URL exactly as set in HubSpot)"
        )


def hubspot_v2(secret: str, method: str, uri: str, body: bytes, signature: str | None) -> None:
    """Check `X-HubSpot-Signature` version v2: hex SHA-256 of secret + method + URI + body.

    Raises:
        SignatureError: Missing or different.
    """
    if not signature:
        raise SignatureError("unsigned request: no X-HubSpot-Signature")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise SignatureError(
            "the body is not UTF-8, so it cannot match a HubSpot signature"
        ) from None
    expected = hashlib.sha256(f"{secret}{method.upper()}{uri}{text}".encode()).hexdigest()
    if not _equal(expected, signature.lower()):
        raise SignatureError(
            "X-HubSpot-Signature (v2) does not match: check the app's client secret and the "
            "source's 'url' (the webhook URL exactly as set in the workflow)"
        )


def pipedrive_basic(credentials: str, authorization: str | None) -> None:
    """Check the HTTP Basic credentials set on a Pipedrive webhook (`user:password`).

    Raises:
        SignatureError: Missing or different.
    """
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not encoded:
        raise SignatureError(
            "no HTTP Basic credentials: set the webhook's HTTP auth user and password in "
            "Pipedrive to the user:password of the source's secret"
        )
    try:
        given = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise SignatureError("the Authorization header is not HTTP Basic credentials") from None
    if not _equal(credentials, given):
        raise SignatureError("the HTTP Basic credentials do not match the source's secret")


def shared_secret(secret: str, given: str | None, header: str) -> None:
    """Check a shared secret sent in a header (Salesforce Flow HTTP callouts).

    Raises:
        SignatureError: Missing or different.
    """
    if not given:
        raise SignatureError(f"no {header} header: the Flow's callout must send the secret in it")
    if not _equal(secret, given):
        raise SignatureError(f"the {header} header does not match the source's secret")


def standard_webhooks(
    secret: str,
    message_id: str | None,
    timestamp: str | None,
    signatures: str | None,
    body: bytes,
    *,
    now: float | None = None,
) -> None:
    """Check the Standard Webhooks headers (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

    Raises:
        SignatureError: A header is missing, the timestamp is stale, or no signature matches.
    """
    if not message_id or not timestamp or not signatures:
        raise SignatureError(
            "unsigned request: send webhook-id, webhook-timestamp and webhook-signature "
            "(Standard Webhooks)"
        )
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureError("webhook-timestamp must be Unix time in whole seconds")
    _age_check(int(timestamp), time.time() if now is None else now, "webhook-timestamp", "seconds")
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except binascii.Error:
        raise SignatureError(
            "the source's secret is not whsec_<base64>: copy it as the sender shows it"
        ) from None
    signed = message_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    for candidate in signatures.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and _equal(expected, value):
            return
    raise SignatureError("no v1 signature in webhook-signature matches the body")


def verify_duly_source(
    secret: str, timestamp: str | None, signature: str | None, body: bytes
) -> None:
    """Check duly's own `X-Duly-Signature`, as /api/events does.

    Raises:
        SignatureError: Unsigned, stale or different.
    """
    verify_duly(secret, timestamp, signature, body)
