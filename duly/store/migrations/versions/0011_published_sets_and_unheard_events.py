"""Published definition sets (`published_sets`) and events no process heard (`unheard_events`).

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-03 06:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import duly.store.types

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Both tables, empty: the first `duly up` (or `duly publish`) publishes revision 1."""
    op.create_table(
        "published_sets",
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("content_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("files", duly.store.types.JsonDocument(), nullable=False),
        sa.Column("published_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("published_at", duly.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("revision"),
    )
    op.create_table(
        "unheard_events",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("type", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("data", duly.store.types.JsonDocument(), nullable=False),
        sa.Column("occurred_at", duly.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("received_at", duly.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("times", sa.Integer(), nullable=False),
        sa.Column("replayed_at", duly.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("replay_status", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("instances", duly.store.types.JsonDocument(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("unheard_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_unheard_events_type"), ["type"], unique=False)


def downgrade() -> None:
    """Drop both tables (the next start publishes the folder again)."""
    with op.batch_alter_table("unheard_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_unheard_events_type"))
    op.drop_table("unheard_events")
    op.drop_table("published_sets")
