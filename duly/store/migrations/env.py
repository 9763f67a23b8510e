"""Alembic's entry point: migrate the connection `duly.store.migrations` hands over.

Batch mode (`render_as_batch`) lets revisions alter columns and constraints on SQLite, which
can't `ALTER` them in place (Alembic copies the table); on PostgreSQL it is plain `ALTER TABLE`.
"""

from __future__ import annotations

from typing import Any

from alembic import context

from duly.store.migrations import metadata

target = metadata()


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Leave alone tables that are in the database but not duly's (APScheduler's job store)."""
    return not (type_ == "table" and reflected and compare_to is None)


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError(
        "duly's migrations run from code: `duly db upgrade`, or duly.store.migrations.upgrade()"
    )
context.configure(
    connection=connection,
    target_metadata=target,
    render_as_batch=True,
    compare_type=True,
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
