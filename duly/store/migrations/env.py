"""Alembic's entry point: migrate the connection `duly.store.migrations` hands over.

Batch mode (`render_as_batch`) lets revisions alter columns and constraints on SQLite, which
can't `ALTER` them in place (Alembic copies the table); on PostgreSQL it is plain `ALTER TABLE`.
"""

from __future__ import annotations

from alembic import context

from duly.store.migrations import include_object, metadata

target = metadata()


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
