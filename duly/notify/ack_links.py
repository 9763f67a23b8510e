"""Acknowledge links: a signed, expiring URL that stands for the manager an alert was sent to.

A link is `<public url>/ack/<token>`; the token is `<payload>.<signature>`, the payload the
base64url JSON `{"a": alert key, "u": user id, "e": expiry (Unix seconds)}` and the signature
its HMAC-SHA256 under the server's `ack_secret`. Opening the link (GET) only shows the alert and
a button, so a mail scanner that fetches every link acknowledges nothing; the button POSTs.
A link is single use through the alert's own state: once acknowledged, the alert says by whom
and when, and the link changes nothing more.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from duly.settings import Settings

LINK_LIFETIME = timedelta(days=7)
"""How long an acknowledge link works: a week, so one sent on a Friday works on Monday."""

SECRET_FILE = "ack.secret"


class AckLinkInvalid(ValueError):
    """An acknowledge link that cannot be used; the message says why."""


@dataclass(frozen=True)
class AckClaim:
    """What a valid link says: whose alert, who acknowledges it, until when."""

    alert_key: str
    user: str
    expires_at: datetime


def ack_secret(settings: Settings) -> str:
    """The signing key, the same wherever the worker and the web app run.

    `DULY_ACK_SECRET` when set; else derived from `DULY_EVENTS_SECRET` (a deployment's
    containers share it, and the derivation keeps the two keys apart); else one made once and
    kept in the data folder, which the worker and the web app of `duly up` share.
    """
    if settings.ack_secret:
        return settings.ack_secret
    if settings.events_secret:
        derived = hmac.new(settings.events_secret.encode(), b"duly-ack-links", hashlib.sha256)
        return derived.hexdigest()
    return _kept_secret(Path(settings.data_dir) / SECRET_FILE)


@functools.lru_cache(maxsize=8)
def _kept_secret(path: Path) -> str:
    """The key kept at `path`, made there if it is not yet.

    Read once a process: every alert to a manager signs a link with it, a storm's thousand.
    """
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    made = secrets.token_hex(32)
    try:
        # O_EXCL: of two processes making it at once, one wins and the other reads its key
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(handle, "w") as file:
        file.write(made)
    return made


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _signature(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), f"duly-ack:{payload}".encode(), hashlib.sha256).digest()
    return _b64(digest)


def make_token(secret: str, *, alert_key: str, user: str, expires_at: datetime) -> str:
    """The token of a link acknowledging `alert_key` as `user`, working until `expires_at`."""
    document = {"a": alert_key, "u": user, "e": int(expires_at.timestamp())}
    payload = _b64(json.dumps(document, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_signature(secret, payload)}"


def read_token(secret: str, token: str, *, now: datetime | None = None) -> AckClaim:
    """What a token claims, once its signature and expiry are checked.

    Raises:
        AckLinkInvalid: Not a token duly signed (altered, cut short, another server's), or
            expired.
    """
    payload, dot, signature = token.partition(".")
    if not dot or not hmac.compare_digest(_signature(secret, payload), signature):
        raise AckLinkInvalid(
            "this acknowledge link is not valid (it was altered, cut short or comes from "
            "another duly); acknowledge the alert on the Alerts page instead"
        )
    try:
        document = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claim = AckClaim(
            alert_key=str(document["a"]),
            user=str(document["u"]),
            expires_at=datetime.fromtimestamp(int(document["e"]), UTC),
        )
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise AckLinkInvalid("this acknowledge link cannot be read") from exc
    if (now or datetime.now(UTC)) >= claim.expires_at:
        when = claim.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        raise AckLinkInvalid(
            f"this acknowledge link expired at {when}; acknowledge the alert on the Alerts page"
        )
    return claim
