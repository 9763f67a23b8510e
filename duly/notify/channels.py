r"""The external channels a notification goes out on: email, Slack-style webhook, signed webhook.

One sender per channel name (`SENDERS`). A sender sends one claimed delivery and returns a
short description of what it did, or raises `DeliveryError` saying why it could not; the
deliverer decides whether to try again. Every channel carries the delivery's key, so a
receiver can drop a notification sent twice (a crash after sending, before recording it).

Text stays text: email is `text/plain`, with an HTML alternative only where duly rendered the
HTML itself, escaping every value (the weekly summary); Slack text has `&`, `<` and `>` escaped
(done when the delivery was queued, see `duly.notify.outbox`); JSON bodies escape `<`, `>` and `&`
as `\u`-escapes (`\u003c`), so a title like `<script>` can't become markup in a receiver
that pastes JSON into a page. URLs are logged by host only: a Slack webhook's path is its
secret.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import smtplib
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.nonmultipart import MIMENonMultipart
from email.utils import formataddr, parseaddr
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

from duly.notify.outbox import Outgoing
from duly.settings import Settings
from duly.signing import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from duly.store.db import SessionFactory

USER_AGENT = "duly-notify/1"


class DeliveryError(Exception):
    """A channel did not take a notification; the message says what happened."""


class SmtpConnections:
    """SMTP sessions kept open between sends, so a burst of alerts is not a burst of connections.

    A storm of 1,000 breaches sends 2,000 emails in seconds; one connection each (connect,
    EHLO, QUIT around every message) costs both sides CPU, and mail relays throttle clients
    that open connections that fast. A session that sent a message waits here to send the next
    one: for `IDLE_SECONDS` at most (relays close idle clients after a few minutes), and for
    `MESSAGES` messages (some relays cap messages per session). A kept session the server has
    closed meanwhile fails at its first command, before any of the message is sent, so the
    message then goes on a fresh session.
    """

    IDLE_SECONDS = 30.0
    MESSAGES = 50

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[tuple[smtplib.SMTP, str, int, float, int]] = []

    def send(self, message: Message, host: str, port: int, timeout: float) -> None:
        """Send `message` through `host:port` on a kept session, or on a new one (blocking)."""
        kept = self._take(host, port)
        if kept is not None:
            smtp, sent = kept
            try:
                smtp.send_message(message)
            except BaseException as exc:
                _quit(smtp)
                if not _closed_by_server(exc):
                    raise
                # closed by the server while it waited: the message was not taken on it
            else:
                self._keep(smtp, host, port, sent + 1)
                return
        smtp = smtplib.SMTP(host, port, timeout=timeout)
        try:
            smtp.send_message(message)
        except BaseException:
            _quit(smtp)
            raise
        self._keep(smtp, host, port, 1)

    def close(self) -> None:
        """End every kept session (QUIT)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for smtp, *_ in idle:
            _quit(smtp)

    def _take(self, host: str, port: int) -> tuple[smtplib.SMTP, int] | None:
        now = time.monotonic()
        stale: list[smtplib.SMTP] = []
        found = None
        with self._lock:
            keep = []
            for entry in self._idle:
                smtp, at_host, at_port, since, sent = entry
                if now - since > self.IDLE_SECONDS:
                    stale.append(smtp)
                elif found is None and (at_host, at_port) == (host, port):
                    found = (smtp, sent)
                else:
                    keep.append(entry)
            self._idle = keep
        for smtp in stale:
            _quit(smtp)
        return found

    def _keep(self, smtp: smtplib.SMTP, host: str, port: int, sent: int) -> None:
        if sent >= self.MESSAGES:
            _quit(smtp)
            return
        with self._lock:
            self._idle.append((smtp, host, port, time.monotonic(), sent))


@dataclass(frozen=True)
class ChannelContext:
    """What senders share.

    Attributes:
        settings: duly's settings (SMTP server and From address).
        http: The HTTP client for webhooks.
        timeout: Seconds a send may take (SMTP: each socket operation).
        sessions: duly's database, for the Slack app (which remembers what it posted).
    """

    settings: Settings
    http: httpx.AsyncClient
    timeout: float
    sessions: SessionFactory | None = None
    smtp: SmtpConnections = field(default_factory=SmtpConnections)


Sender = Callable[[Outgoing, ChannelContext], Awaitable[str]]


def json_body(document: Any) -> bytes:
    """`document` as compact JSON, with `<`, `>` and `&` escaped (the same data, parsed)."""
    text = json.dumps(document, ensure_ascii=False, separators=(",", ":"), default=str)
    text = text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    return text.encode()


def where(url: str) -> str:
    """A URL reduced to scheme and host, for logs and errors people see."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else "(bad url)"


# --- where duly may connect ----------------------------------------------------------------------


def outbound_allowed(url: str, settings: Settings) -> bool:
    """Whether `url`'s host is in `DULY_OUTBOUND_HOSTS` (exactly, by `*.domain`, or `*`).

    Data in a process or a user's channel must not make the worker reach hosts its admin did
    not list: internal services, cloud metadata addresses.
    """
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    try:
        # the host httpx will connect to must be the one checked (`a\\@b` is read two ways)
        connects_to = httpx.URL(url).host.rstrip(".").lower()
    except (httpx.InvalidURL, ValueError):
        return False
    if not host or connects_to != host:
        return False
    for entry in settings.outbound_hosts.split(","):
        allowed = entry.strip().strip("[]").rstrip(".").lower()
        if allowed == "*" or allowed == host:
            return True
        if allowed.startswith("*.") and host.endswith(allowed[1:]):
            return True
    return False


def refused_host(url: str) -> str:
    """Why a URL outside the allow-list is not posted to, and what to do about it."""
    return (
        f"{where(url)} is not in DULY_OUTBOUND_HOSTS (the hosts duly may post to); "
        "add its host there if it should be reached"
    )


# --- email ---------------------------------------------------------------------------------------


def _utf8_quoted_printable() -> Charset:
    charset = Charset("utf-8")
    charset.body_encoding = QP  # text stays readable in a mail's source, accents and all
    return charset


_UTF8 = _utf8_quoted_printable()


def email_message(item: Outgoing, settings: Settings) -> Message:
    """The plain-text email of a delivery, its Message-ID derived from the delivery's key.

    Built with the `email.mime` classes: the `email.policy.default` header registry parses
    every header it is given, a millisecond a message, which a storm of a thousand alerts
    spends in the worker beside its SLA work. Non-ASCII text is encoded all the same: bodies
    as UTF-8 quoted-printable, a subject or a display name as an RFC 2047 encoded word.
    """
    assert item.target is not None
    message: Message = _text_part(item.body, "plain")
    html = item.payload.get("html")
    if isinstance(html, str) and html:  # only HTML duly rendered itself (`outbox.enqueue`)
        alternatives = MIMEMultipart("alternative")
        alternatives.attach(message)
        alternatives.attach(_text_part(html, "html"))
        message = alternatives
    message["From"] = _address(settings.smtp_from)
    message["To"] = _address(item.target)
    subject = " ".join(item.subject.split())
    # a Header is folded into RFC 2047 encoded words when the message is sent (typeshed allows
    # only str here, though `email` takes either)
    message["Subject"] = subject if subject.isascii() else cast(str, Header(subject, "utf-8"))
    domain = settings.smtp_from.rpartition("@")[2].rstrip(">") or "duly"
    message["Message-ID"] = f"<{hashlib.sha256(item.key.encode()).hexdigest()[:32]}@{domain}>"
    message["X-Duly-Idempotency-Key"] = item.key
    message["X-Duly-Notification"] = item.kind
    return message


def _text_part(text: str, subtype: str) -> MIMENonMultipart:
    part = MIMENonMultipart("text", subtype)
    part.set_payload(text, _UTF8)
    return part


def _address(text: str) -> str:
    """An address header's value, its display name encoded when it is not ASCII."""
    if text.isascii():
        return text
    name, address = parseaddr(text)
    return formataddr((name, address), charset="utf-8")


def _closed_by_server(exc: BaseException) -> bool:
    """Whether a send failed because the server had ended the session (timed it out, say).

    Either the connection is gone, or the server answered 421 ("closing the transmission
    channel") to a command: it took no message.
    """
    if isinstance(exc, (smtplib.SMTPServerDisconnected, ConnectionError)):
        return True
    if isinstance(exc, smtplib.SMTPResponseException):
        return exc.smtp_code == 421
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return all(code == 421 for code, _ in exc.recipients.values())
    return False


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        smtp.close()


async def send_email(item: Outgoing, context: ChannelContext) -> str:
    """Send a delivery by email through the configured SMTP server (smtplib, in a thread)."""
    settings = context.settings
    message = email_message(item, settings)
    try:
        await asyncio.to_thread(
            context.smtp.send, message, settings.smtp_host, settings.smtp_port, context.timeout
        )
    except (smtplib.SMTPException, OSError) as exc:
        reason = str(exc) or type(exc).__name__
        raise DeliveryError(f"SMTP {settings.smtp_host}:{settings.smtp_port}: {reason}") from exc
    return f"emailed {item.target}"


# --- webhooks ------------------------------------------------------------------------------------


async def _post(context: ChannelContext, url: str, body: bytes, headers: dict[str, str]) -> str:
    if not outbound_allowed(url, context.settings):
        raise DeliveryError(refused_host(url))
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers}
    try:
        response = await context.http.post(
            url, content=body, headers=headers, timeout=context.timeout
        )
    except httpx.TimeoutException as exc:
        raise DeliveryError(f"{where(url)} did not answer within {context.timeout:g} s") from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise DeliveryError(f"{where(url)}: {str(exc) or type(exc).__name__}") from exc
    if not response.is_success:
        raise DeliveryError(f"{where(url)} answered {response.status_code}: {response.text[:200]}")
    return f"POST {where(url)}: {response.status_code}"


async def post_slack(item: Outgoing, context: ChannelContext) -> str:
    """POST `{"text": ...}` to a Slack-compatible incoming webhook, or DM through the Slack app.

    A target that is a Slack member id (org.yaml `slack_id`) goes through the app
    (`duly.notify.slack.sender`), with buttons.
    """
    assert item.target is not None
    if is_app_target(item.target):
        return await send_slack_app(item, context)
    return await _post(context, item.target, json_body(item.payload), {KEY_HEADER: item.key})


async def post_webhook(item: Outgoing, context: ChannelContext) -> str:
    """POST the delivery's JSON document, signed when the user's webhook names a secret.

    Headers: `Idempotency-Key` (the delivery's key), `X-Duly-Event` (its kind),
    `X-Duly-Timestamp`, and `X-Duly-Signature` (see `duly.signing`).
    """
    assert item.target is not None
    body = json_body(item.payload)
    timestamp = str(int(time.time()))
    headers = {KEY_HEADER: item.key, "X-Duly-Event": item.kind, TIMESTAMP_HEADER: timestamp}
    if item.secret_env:
        secret = os.environ.get(item.secret_env)
        if not secret:
            raise DeliveryError(
                f"the environment variable {item.secret_env} (secret_env of {item.user_id}'s "
                "webhook in org.yaml) is not set where the worker runs; set it to the secret"
            )
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    return await _post(context, item.target, body, headers)


async def send_slack_app(item: Outgoing, context: ChannelContext) -> str:
    """Send a delivery as a direct message from the org's Slack app."""
    from duly.notify.slack.sender import (  # slack_sdk only when used
        SlackSendError,
        send_app_message,
    )

    if not outbound_allowed(context.settings.slack_api_url, context.settings):
        raise DeliveryError(refused_host(context.settings.slack_api_url))
    if context.sessions is None:
        raise DeliveryError("the Slack app needs duly's database to remember what it posted")
    try:
        return await send_app_message(item, context.sessions, context.settings.slack_api_url)
    except SlackSendError as exc:
        raise DeliveryError(str(exc)) from exc


def is_app_target(target: str) -> bool:
    """Whether a `slack` target is a Slack member id (the app) rather than a webhook URL."""
    return "://" not in target


SENDERS: dict[str, Sender] = {
    "email": send_email,
    "slack": post_slack,
    "webhook": post_webhook,
}
"""Senders by channel name; the names are those of `duly.store.models.CHANNELS`."""


async def send(item: Outgoing, context: ChannelContext) -> str:
    """Send one delivery on its channel.

    Raises:
        DeliveryError: The channel is unknown, or did not take the notification.
    """
    sender = SENDERS.get(item.channel)
    if sender is None:
        raise DeliveryError(f"no channel named '{item.channel}'")
    return await sender(item, context)
