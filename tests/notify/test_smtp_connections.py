"""Emails in a burst share SMTP sessions, and a session the server closed is replaced.

The server is real: aiosmtpd on 127.0.0.1, counting the sessions it was greeted in.
"""

from __future__ import annotations

import select
import time
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import free_port

from duly.notify.channels import SmtpConnections


class Counting:
    """An SMTP handler that keeps each message and counts the sessions that greeted it."""

    def __init__(self) -> None:
        self.sessions = 0
        self.subjects: list[str] = []

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        subject = next(
            line for line in envelope.content.decode().splitlines() if line.startswith("Subject")
        )
        self.subjects.append(subject.removeprefix("Subject: "))
        return "250 Message accepted for delivery"


def server(idle_timeout: float = 300.0) -> Iterator[tuple[Controller, Counting]]:
    handler = Counting()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port(), timeout=idle_timeout)
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


@pytest.fixture
def relay() -> Iterator[tuple[Controller, Counting]]:
    yield from server()


@pytest.fixture
def impatient_relay() -> Iterator[tuple[Controller, Counting]]:
    """A relay that drops a client idle for a fifth of a second."""
    yield from server(idle_timeout=0.2)


def message(number: int) -> EmailMessage:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = "duly@acme.test", "maria@acme.test", f"n{number}"
    mail.set_content("a breach")
    return mail


def test_a_burst_of_emails_goes_through_one_session(relay: tuple[Controller, Counting]) -> None:
    controller, handler = relay
    connections = SmtpConnections()
    for number in range(5):
        connections.send(message(number), "127.0.0.1", controller.port, timeout=10)
    connections.close()
    assert handler.subjects == ["n0", "n1", "n2", "n3", "n4"]
    assert handler.sessions == 1


def test_a_session_ends_after_its_share_of_messages(relay: tuple[Controller, Counting]) -> None:
    controller, handler = relay
    connections = SmtpConnections()
    connections.MESSAGES = 2
    for number in range(5):
        connections.send(message(number), "127.0.0.1", controller.port, timeout=10)
    connections.close()
    assert handler.subjects == ["n0", "n1", "n2", "n3", "n4"]
    assert handler.sessions == 3  # 2 + 2 + 1


def test_a_session_the_relay_closed_meanwhile_is_replaced_and_the_email_sent_once(
    impatient_relay: tuple[Controller, Counting],
) -> None:
    controller, handler = impatient_relay
    connections = SmtpConnections()
    connections.send(message(1), "127.0.0.1", controller.port, timeout=10)
    ((kept, *_),) = connections._idle
    assert kept.sock is not None
    deadline = time.monotonic() + 30
    while not select.select([kept.sock], [], [], 0.1)[0]:  # the relay's 421, then its close
        assert time.monotonic() < deadline, "the relay never closed the idle session"
    connections.send(message(2), "127.0.0.1", controller.port, timeout=10)
    connections.close()
    assert handler.subjects == ["n1", "n2"]
    assert handler.sessions == 2


def test_a_session_idle_too_long_is_not_used_again(relay: tuple[Controller, Counting]) -> None:
    controller, handler = relay
    connections = SmtpConnections()
    connections.IDLE_SECONDS = 0.0
    connections.send(message(1), "127.0.0.1", controller.port, timeout=10)
    connections.send(message(2), "127.0.0.1", controller.port, timeout=10)
    connections.close()
    assert handler.subjects == ["n1", "n2"]
    assert handler.sessions == 2
