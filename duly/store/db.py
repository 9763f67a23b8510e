"""Engines and sessions for SQLite (embedded) and PostgreSQL (production), one code path."""

from __future__ import annotations

import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, SQLModel

import duly.store.models  # noqa: F401  (registers the tables on SQLModel.metadata)

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer waits for another writer before failing (then Temporal retries)."""

SessionFactory = Callable[[], Session]

# Execution option read by the SQLite `begin` hook: how a transaction starts there.
_SQLITE_BEGIN = "duly_sqlite_begin"
WRITE = {_SQLITE_BEGIN: "IMMEDIATE"}
"""Session execution options for a transaction that will write (see `write_session`)."""


def make_engine(url: str, *, connect_args: dict[str, Any] | None = None) -> Engine:
    """An engine for a SQLite file or a PostgreSQL database.

    SQLite gets WAL (readers never wait for the writer), foreign keys, a busy timeout, and
    transactions whose `BEGIN` duly issues itself, so a writer can take the write lock up front
    (`BEGIN IMMEDIATE`, see `write_session`). A `postgresql://` URL uses psycopg 3.

    Args:
        url: A SQLAlchemy URL, e.g. `sqlite:///data/duly.db` or
            `postgresql+psycopg://duly@db:5432/duly`.
        connect_args: Extra arguments for the driver's `connect()` (PostgreSQL `options`, say).
    """
    parsed = make_url(url)
    args = dict(connect_args or {})
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        args.setdefault("check_same_thread", False)  # activities run on a thread pool
        engine = create_engine(parsed, connect_args=args)
        _configure_sqlite(engine)
        return engine
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, connect_args=args, pool_pre_ping=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Stop the sqlite3 module from issuing BEGIN itself; `_on_begin` does it instead
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # A deferred transaction that reads and then writes fails at once if another writer
        # committed in between; IMMEDIATE takes the write lock first and waits its turn.
        mode = connection.get_execution_options().get(_SQLITE_BEGIN, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")


class CommitWatch:
    """Whether anyone committed to a store since the last time this was asked.

    On SQLite, its `PRAGMA data_version`, read on a connection of the watch's own that never
    writes and holds no transaction; elsewhere it answers that someone may have. For a reader
    that polls (the demo's and a simulation's driver look for new tasks after each of thousands
    of jumps of the clock, a third of them with nothing written in between).
    """

    def __init__(self, engine: Engine) -> None:
        """Watch the store of `engine`."""
        self._connection: sqlite3.Connection | None = None
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
            self._connection = sqlite3.connect(url.database, isolation_level=None)
        self._version: int | None = None

    def committed(self) -> bool:
        """True when a commit may have come since the last call (and at the first)."""
        if self._connection is None:
            return True
        (version,) = self._connection.execute("PRAGMA data_version").fetchone()
        changed, self._version = version != self._version, version
        return bool(changed)

    def close(self) -> None:
        """Close the watch's connection."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def create_all(engine: Engine) -> None:
    """Create every table of a new database at once, marked as at the newest migration.

    For tests and scratch databases: quicker than replaying every revision, and the same
    schema (tests/test_migrations.py proves it). Every other database is migrated (`migrate`).
    """
    with engine.begin() as connection:
        SQLModel.metadata.create_all(connection)
        from duly.store.migrations import stamp_head

        stamp_head(connection)


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema with the Alembic migrations in `migrations/`.

    A new database gets every table; one from an older duly gets what changed since.
    """
    from duly.store.migrations import upgrade

    upgrade(engine)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on `engine`; objects stay readable after commit."""
    return sessionmaker(engine, class_=Session, expire_on_commit=False)


@contextmanager
def write_session(sessions: SessionFactory) -> Iterator[Session]:
    """A session in one transaction that writes: committed on success, rolled back on error.

    On SQLite the transaction starts with `BEGIN IMMEDIATE`, so writers run one at a time and a
    read-then-write (pick an assignee, then insert the task) sees no concurrent change. On
    PostgreSQL it is a plain transaction; callers lock rows with `SELECT ... FOR UPDATE`.
    """
    with sessions() as session, _one_writer_at_a_time(session.get_bind()):
        with session.begin():
            session.connection(execution_options=WRITE)
            yield session


_writer_turns: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_turns_made = threading.Lock()


@contextmanager
def _one_writer_at_a_time(bind: Engine | Connection) -> Iterator[None]:
    """On SQLite, this process's writers take turns here rather than in SQLite's busy handler.

    The busy handler sleeps between tries (up to 100 ms each), so a lock given up goes unused
    until some sleeper wakes: with many writers waiting, most of the time. A turn here passes
    on the moment the last writer commits. Writers in other processes still meet SQLite's lock;
    a turn not had within the busy timeout goes on to it as well.
    """
    engine = bind.engine
    if engine.dialect.name != "sqlite":
        yield
        return
    with _turns_made:
        turn = _writer_turns.setdefault(engine, threading.RLock())
    had = False
    try:
        had = turn.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
        yield
    finally:
        if had:
            turn.release()
