"""Slack's request signatures (v0, five-minute window) and its retries, checked at the door."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Mapping

from slack_sdk.signature import SignatureVerifier

from duly.language.model import OrgSpec
from duly.services.errors import NotAuthenticated, NotFound, Unavailable
from duly.slack.config import SlackNotConfigured, SlackSecrets, secrets

RETRY_HEADER = "x-slack-retry-num"
REMEMBERED = 10_000  # request bodies remembered to drop Slack's retries of them
REMEMBER_FOR = 600.0  # seconds; Slack retries within minutes


def app_secrets(org: OrgSpec) -> SlackSecrets:
    """The app's secrets, or the error the endpoint answers with.

    Raises:
        NotFound: org.yaml has no Slack app.
        Unavailable: A variable it names is not set here.
    """
    if org.slack is None:
        raise NotFound("this duly has no Slack app: add `slack:` to definitions/org.yaml")
    try:
        return secrets(org)
    except SlackNotConfigured as exc:
        raise Unavailable(str(exc)) from None


def verify(signing_secret: str, body: bytes, headers: Mapping[str, str]) -> None:
    """Check a request's `X-Slack-Signature` (v0 HMAC-SHA256 of `v0:<timestamp>:<body>`).

    slack_sdk's `SignatureVerifier` also refuses a timestamp more than five minutes away.

    Raises:
        NotAuthenticated: No signature, a wrong one, or a stale timestamp.
    """
    verifier = SignatureVerifier(signing_secret)
    timestamp = headers.get("x-slack-request-timestamp")
    signature = headers.get("x-slack-signature")
    if not timestamp or not signature:
        raise NotAuthenticated("missing X-Slack-Signature or X-Slack-Request-Timestamp")
    try:
        valid = verifier.is_valid(body=body, timestamp=timestamp, signature=signature)
    except ValueError:  # a timestamp that is not a number
        valid = False
    if not valid:
        raise NotAuthenticated(
            "the Slack signature does not match, or its timestamp is more than five minutes "
            "from duly's clock: check the app's signing secret and this server's clock"
        )


class SeenRequests:
    """Request bodies handled lately, so a retry Slack sends of one changes nothing twice.

    A retry (`X-Slack-Retry-Num`) of a body already handled is answered without acting again;
    the actions themselves are idempotent too (a second completion is refused, acknowledging
    twice keeps the first), which covers replicas that did not see the first request.
    """

    def __init__(self, size: int = REMEMBERED, ttl: float = REMEMBER_FOR) -> None:
        self._seen: OrderedDict[str, float] = OrderedDict()
        self._size, self._ttl = size, ttl

    def first_time(self, body: bytes, now: float | None = None) -> bool:
        """Record `body`; False when it was handled within the last `ttl` seconds."""
        now = time.monotonic() if now is None else now
        while self._seen and next(iter(self._seen.values())) < now - self._ttl:
            self._seen.popitem(last=False)
        digest = hashlib.sha256(body).hexdigest()
        if digest in self._seen:
            return False
        self._seen[digest] = now
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)
        return True
