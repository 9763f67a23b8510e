"""Fixtures shared by the Temporal tests: real servers from the PyPI wheels, nothing downloaded."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiosmtpd.controller import Controller
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from duly import temporal_binaries
from duly.language.loader import Definitions, load_definitions
from duly.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: starts real servers or processes; runs by default (-m 'not slow' skips)"
    )


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def time_skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Java time-skipping test server: timers fire as soon as nothing else can happen."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(temporal_binaries.test_server_path()),
        data_converter=pydantic_data_converter,
    )
    yield env
    await env.shutdown()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def dev_server_env() -> AsyncIterator[WorkflowEnvironment]:
    """The Temporal CLI dev server (in memory, real time): for durability and replay tests."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(temporal_binaries.dev_server_path()),
        data_converter=pydantic_data_converter,
        ip="127.0.0.1",
        ui=False,
    )
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    """A task queue of this test's own, so no other test's worker takes its tasks."""
    return f"test-{uuid.uuid4()}"


@pytest.fixture(scope="session")
def definitions() -> Definitions:
    """The shipped definitions/ folder, loaded and compiled."""
    return load_definitions(ROOT / "definitions")


# --- a real SMTP server ---------------------------------------------------------------------


class Inbox:
    def __init__(self) -> None:
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Settings, Inbox]]:
    """A real SMTP server (aiosmtpd) on 127.0.0.1, and settings pointing at it."""
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield (
        Settings(smtp_host="127.0.0.1", smtp_port=controller.port, smtp_from="duly@acme.test"),
        inbox,
    )
    controller.stop()
