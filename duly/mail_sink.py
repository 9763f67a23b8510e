"""The embedded stack's mail sink: an SMTP server on 127.0.0.1 that keeps every mail as a file.

`duly up` runs on one machine with no mail relay, yet processes send email (a quote summary, a
question to a customer). The sink accepts them on `DULY_SMTP_HOST:DULY_SMTP_PORT` and writes
each to `<data_dir>/outbox/` as an .eml file, so a newcomer can read what duly sent; a mail
with an HTML part is also kept as an .html file beside it, to open in a browser, and its links
(the instance, the acknowledge page) are logged. Point `DULY_SMTP_HOST` at a real relay (not on
this machine) and the sink stays off.

Not to be confused with `duly.notify.outbox`: the transactional outbox every notification waits
in until it is delivered, on any channel.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import structlog
from aiosmtpd.controller import Controller

from duly.settings import Settings

log = structlog.get_logger(__name__)
LOCAL_HOSTS = ("127.0.0.1", "localhost")
LINK = re.compile(r"https?://\S+")


class _Keep:
    """aiosmtpd handler: write each message to a file of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.folder / f"{stamp}.eml"
        raw = envelope.original_content or envelope.content
        path.write_bytes(raw)
        kept = keep_readable(path, raw)
        log.info("mail kept in the outbox", to=envelope.rcpt_tos, file=str(path), **kept)
        return "250 Message accepted for delivery"


def keep_readable(path: Path, raw: bytes) -> dict[str, Any]:
    """Beside the .eml at `path`: its HTML part as an .html file; its subject and links.

    Returns:
        What to log: `subject`, `html` (the .html file, when there is an HTML part) and
        `links` (the URLs of its text part, in order).
    """
    mail = message_from_bytes(raw, policy=policy.default)
    kept: dict[str, Any] = {"subject": str(mail.get("Subject", ""))}
    if not isinstance(mail, EmailMessage):
        return kept
    html_part = mail.get_body(preferencelist=("html",))
    if html_part is not None and isinstance(html_part, EmailMessage):
        page = path.with_suffix(".html")
        page.write_text(html_part.get_content(), encoding="utf-8")
        kept["html"] = str(page)
    text_part = mail.get_body(preferencelist=("plain",))
    if text_part is not None and isinstance(text_part, EmailMessage):
        kept["links"] = LINK.findall(text_part.get_content())
    return kept


def wanted(settings: Settings) -> bool:
    """The sink runs when mail is addressed to this machine."""
    return settings.smtp_host in LOCAL_HOSTS


def folder(settings: Settings) -> Path:
    """Where kept mail goes."""
    return settings.data_dir / "outbox"


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """Serve SMTP on the configured local port until `stop` is set."""
    target = folder(settings)
    target.mkdir(parents=True, exist_ok=True)
    controller = Controller(_Keep(target), hostname="127.0.0.1", port=settings.smtp_port)
    controller.start()
    try:
        await stop.wait()
    finally:
        controller.stop()
