"""Open tasks and running instances are found by an index, not a scan of every row ever.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 15:00:00.000000

`tasks.status` and `instances.status` gain an index each: a backlog monitor counts the open
tasks, the dashboard lists them, and a new published set looks for the running instances of
its processes; each read every row ever written before.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = {"tasks": "ix_tasks_status", "instances": "ix_instances_status"}


def upgrade() -> None:
    """Index each table's status, unless it is indexed already."""
    # A database an older duly made with create_all is adopted by creating the baseline tables
    # from today's models, which already have these indexes
    inspector = sa.inspect(op.get_bind())
    for table, name in INDEXES.items():
        if name not in {index["name"] for index in inspector.get_indexes(table)}:
            op.create_index(name, table, ["status"])


def downgrade() -> None:
    """Drop the two indexes."""
    for table, name in INDEXES.items():
        op.drop_index(name, table_name=table)
