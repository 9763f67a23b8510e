"""The embedded stack's outbox: an SMTP server on 127.0.0.1 that keeps every mail as a file.

`duly up` runs on one machine with no mail relay, yet processes send email (a quote summary, a
question to a customer). The outbox accepts them on `DULY_SMTP_HOST:DULY_SMTP_PORT` and writes
each to `<data_dir>/outbox/` as an .eml file, so a newcomer can read what duly sent. Point
`DULY_SMTP_HOST` at a real relay (not on this machine) and the outbox stays off.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from aiosmtpd.controller import Controller

from duly.settings import Settings

log = structlog.get_logger(__name__)
LOCAL_HOSTS = ("127.0.0.1", "localhost")


class _Keep:
    """aiosmtpd handler: write each message to a file of its own."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        path = self.folder / f"{stamp}.eml"
        path.write_bytes(envelope.original_content or envelope.content)
        log.info("mail kept in the outbox", to=envelope.rcpt_tos, file=str(path))
        return "250 Message accepted for delivery"


def wanted(settings: Settings) -> bool:
    """The outbox runs when mail is addressed to this machine."""
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
