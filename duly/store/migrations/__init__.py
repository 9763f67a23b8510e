"""Alembic migrations of duly's database, run from code: no alembic.ini to find.

`upgrade(engine)` brings any database to the newest revision: an empty one, one a previous
release migrated, or one an older duly made with `create_all` before there were migrations (it
is first given the tables of the baseline revision and stamped with it). Several processes may
upgrade at once (a worker and the web app starting together): on PostgreSQL an advisory lock
lets one migrate while the others wait, then find nothing left to do.

How to add a revision: see README.md beside this file, or `duly db revision --help`.
"""

from __future__ import annotations

import importlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, MetaData, create_engine, inspect, text
from sqlmodel import SQLModel

HERE = Path(__file__).resolve().parent

TABLE_MODULES = ("duly.store.models",)
"""Every module that defines tables (`table=True`): migrations compare against all of them."""

BASELINE = "0001"
"""The first revision: the schema duly had when migrations began."""

BASELINE_TABLES = (
    "users",
    "user_channels",
    "teams",
    "team_members",
    "rotations",
    "definitions",
    "instances",
    "tasks",
    "step_facts",
    "sla_events",
    "alerts",
    "inbound_events",
    "deliveries",
)
"""The tables revision 0001 creates; an unversioned database with them predates migrations."""

# Any fixed 64-bit number: the key of the PostgreSQL advisory lock migrations run under
_LOCK_KEY = 0x6475_6C79_6D69_6772  # "dulymigr"


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Whether migrations manage a schema object.

    Not tables that are in the database but not in duly's models (APScheduler's job store,
    say): autogenerate would otherwise write revisions that drop them.
    """
    return not (type_ == "table" and reflected and compare_to is None)


def metadata() -> MetaData:
    """The metadata of every duly table, after importing each module in `TABLE_MODULES`."""
    for module in TABLE_MODULES:
        importlib.import_module(module)
    return SQLModel.metadata


def config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for duly's migrations, optionally bound to a connection."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", str(HERE / "versions"))
    # Revision files are named by their number: 0002_monitor_state.py
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.set_main_option("truncate_slug_length", "30")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@cache
def scripts() -> ScriptDirectory:
    """The revision files (read once per process)."""
    return ScriptDirectory.from_config(config())


def head() -> str:
    """The newest revision id."""
    found = scripts().get_current_head()
    assert found is not None, "duly/store/migrations/versions holds no revision"
    return found


def stamp_head(connection: Connection) -> None:
    """Mark a database whose tables `create_all` just made as being at the newest revision.

    Only an unversioned database is stamped: one already migrated keeps its revision.
    """
    context = MigrationContext.configure(connection)
    if context.get_current_revision() is None:
        context.stamp(scripts(), "head")


def current(engine: Engine) -> str | None:
    """The revision the database is at; None when it was never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Migrate the database to `revision` (the newest by default); returns where it ends.

    A database made by `create_all` before migrations existed (tables, no `alembic_version`)
    is adopted first (see `_adopt`).
    """
    with _migrating(engine) as connection:
        unversioned = MigrationContext.configure(connection).get_current_revision() is None
        if unversioned and inspect(connection).has_table("users"):
            _adopt(connection)
        command.upgrade(config(connection), revision)
        return MigrationContext.configure(connection).get_current_revision()


def _adopt(connection: Connection) -> None:
    """Stamp a database `create_all` made before migrations with the revision it matches.

    It gets whatever baseline table it lacks (as `create_all` at the next start would have
    given it). Made by a duly as new as these models, it matches them and is stamped head;
    otherwise it is stamped with the baseline, and the revisions after it bring it up to date.
    """
    tables = [metadata().tables[name] for name in BASELINE_TABLES]
    metadata().create_all(connection, tables=tables)
    opts = {"compare_type": True, "include_object": include_object}
    current = not compare_metadata(MigrationContext.configure(connection, opts=opts), metadata())
    command.stamp(config(connection), "head" if current else BASELINE)


def downgrade(engine: Engine, revision: str) -> str | None:
    """Migrate the database back to `revision` (`base`: no tables); returns where it ends."""
    with _migrating(engine) as connection:
        command.downgrade(config(connection), revision)
        return MigrationContext.configure(connection).get_current_revision()


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """A connection that migrates, alone: PostgreSQL holds an advisory lock meanwhile."""
    with engine.connect() as connection:
        postgres = connection.dialect.name == "postgresql"
        if postgres:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
            connection.commit()
        try:
            yield connection
            connection.commit()
        finally:
            if postgres:
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
                connection.commit()


def _next_number() -> str:
    """The id of the next revision: the newest's number plus one ("0002" after "0001")."""
    return f"{int(head()) + 1:04d}"


def revision(message: str) -> Path:
    """Write a new revision with what the models hold and the newest revision lacks.

    The models are compared with a scratch SQLite database upgraded to head, so no running
    database is needed. Read the file it writes before committing it: autogenerate sees tables,
    columns, indexes, constraints and types, not renames or data changes.

    Returns:
        The new revision's file.
    """
    with tempfile.TemporaryDirectory() as scratch:
        # a plain engine: duly.store.db's engines migrate through this module, not the reverse
        engine = create_engine(f"sqlite:///{Path(scratch) / 'head.db'}")
        try:
            upgrade(engine)
            with engine.begin() as connection:
                script = command.revision(
                    config(connection), message, autogenerate=True, rev_id=_next_number()
                )
        finally:
            engine.dispose()
    assert script is not None and not isinstance(script, list)
    return Path(script.path)
