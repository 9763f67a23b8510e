"""Facts keep when duly received the event as well as when it happened (`received_at`).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 05:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import duly.store.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Two nullable columns: facts recorded before them knew only one time."""
    # A database an older duly made with create_all is adopted by creating the baseline tables
    # from today's models, which may already have these columns
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("step_facts")}
    columns: list[sa.Column[object]] = [
        sa.Column("received_at", duly.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("late_arriving", sa.Boolean(), nullable=True),
    ]
    missing = [column for column in columns if column.name not in present]
    if not missing:
        return
    with op.batch_alter_table("step_facts", schema=None) as batch_op:
        for column in missing:
            batch_op.add_column(column)


def downgrade() -> None:
    """Drop them; opened_at (the occurred time) stays."""
    with op.batch_alter_table("step_facts", schema=None) as batch_op:
        batch_op.drop_column("late_arriving")
        batch_op.drop_column("received_at")
