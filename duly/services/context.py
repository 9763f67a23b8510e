"""What every service call works with: settings, definitions, the database and Temporal."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from sqlmodel import Session
from temporalio.client import Client

from duly.language.loader import Definitions
from duly.published import PublishedDefinitions
from duly.services.errors import Unavailable, from_client_error
from duly.settings import Settings
from duly.store.db import SessionFactory, write_session
from duly.temporal_client import TemporalUnavailable

ClientFactory = Callable[[], Awaitable[Client]]


class TemporalProvider:
    """A Temporal client, connected on first use and then shared by every request.

    Requests that never reach Temporal (listings, permission refusals) never connect, so the
    API answers them even while Temporal is down. A Temporal client belongs to the event loop
    it was made in, so there is one per loop: a server has one loop, and so one client.

    Args:
        factory: Connects a client, e.g. `lambda: connect(address, namespace)`.
    """

    def __init__(self, factory: ClientFactory) -> None:
        self._factory = factory
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Client] = (
            weakref.WeakKeyDictionary()
        )
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def of(cls, client: Client) -> TemporalProvider:
        """A provider of an already connected client (the one `duly up` made)."""

        async def existing() -> Client:
            return client

        return cls(existing)

    async def get(self) -> Client:
        """The shared client, connecting it if this is the first use.

        Raises:
            Unavailable: Temporal did not answer.
        """
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is not None:
            return client
        lock = self._locks.setdefault(loop, asyncio.Lock())
        async with lock:
            client = self._clients.get(loop)
            if client is None:
                try:
                    client = await self._factory()
                except TemporalUnavailable as exc:
                    raise from_client_error(exc) from None
                except RuntimeError as exc:
                    raise Unavailable(f"cannot reach Temporal: {exc}") from None
                self._clients[loop] = client
        return client


@dataclass(frozen=True)
class ServiceContext:
    """Everything the services need: one per API server, CLI command or Slack handler.

    Attributes:
        settings: duly's settings.
        loaded: The definitions loaded at start (used while nothing is published).
        sessions: Makes database sessions.
        temporal: The shared Temporal client, connected when first needed.
        published: The published set, read from the store; None serves `loaded` only.
    """

    settings: Settings
    loaded: Definitions
    sessions: SessionFactory
    temporal: TemporalProvider
    published: PublishedDefinitions | None = None

    @property
    def definitions(self) -> Definitions:
        """The current published definitions (processes, calendars, org, sources)."""
        return self.published.current() if self.published is not None else self.loaded

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading."""
        with self.sessions() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one transaction that writes, committed on success."""
        with write_session(self.sessions) as session:
            yield session
