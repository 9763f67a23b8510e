"""The embedded stack's mail sink keeps what a newcomer can open: the .eml, its HTML, its links."""

from __future__ import annotations

import asyncio
import smtplib
from pathlib import Path

from conftest import free_port

from duly import mail_sink
from duly.notify import render
from duly.notify.channels import email_message
from duly.notify.model import Action, Fact, Message
from duly.notify.outbox import Outgoing
from duly.settings import Settings


async def test_an_html_email_is_kept_as_a_page_to_open_and_its_links_are_logged(
    tmp_path: Path,
) -> None:
    settings = Settings(data_dir=tmp_path, smtp_port=free_port())
    message = Message(
        kind="alert.breach",
        label="Breach",
        subject="Breach: Call Lee Park",
        headline="Call Lee Park",
        facts=[Fact(label="Due", value="2026-11-20 09:00 EST")],
        actions=[
            Action(label="Open the instance", url="http://127.0.0.1:8000/instances/q/Q-1/abc"),
            Action(label="Acknowledge", url="http://127.0.0.1:8000/ack/token.sig", primary=True),
        ],
    )
    item = Outgoing(
        id=1,
        key="k:email",
        user_id="maria",
        channel="email",
        kind=message.kind,
        subject=message.subject,
        body=render.text(message),
        payload={"html": render.html(message)},
        attempt=1,
        target="maria@example.com",
    )
    stop = asyncio.Event()
    running = asyncio.create_task(mail_sink.run(settings, stop))
    try:
        folder = mail_sink.folder(settings)
        for _ in range(500):  # the server is up once it answers
            try:
                await asyncio.to_thread(_send, settings, item)
                break
            except OSError:
                await asyncio.sleep(0.01)
        else:
            raise AssertionError("the mail sink never answered")
        pages = sorted(folder.glob("*.html"))
        assert len(pages) == 1 and len(list(folder.glob("*.eml"))) == 1
        assert "Acknowledge" in pages[0].read_text() and "EST" in pages[0].read_text()
        kept = mail_sink.keep_readable(
            pages[0].with_suffix(".eml"), next(folder.glob("*.eml")).read_bytes()
        )
        assert kept["subject"] == "Breach: Call Lee Park"
        assert kept["links"] == [
            "http://127.0.0.1:8000/instances/q/Q-1/abc",
            "http://127.0.0.1:8000/ack/token.sig",
        ]
    finally:
        stop.set()
        await running


def _send(settings: Settings, item: Outgoing) -> None:
    with smtplib.SMTP("127.0.0.1", settings.smtp_port, timeout=5) as smtp:
        smtp.send_message(email_message(item, settings))
