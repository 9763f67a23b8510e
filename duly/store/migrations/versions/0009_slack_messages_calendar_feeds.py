"""Slack app messages (`slack_messages`) and calendar feeds (`calendar_feeds`).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import duly.store.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Two new, empty tables."""
    op.create_table(
        "slack_messages",
        sa.Column("delivery_key", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=False),
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("task_id", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("alert_id", sa.Integer(), nullable=True),
        sa.Column("channel", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("ts", sqlmodel.sql.sqltypes.AutoString(length=50), nullable=False),
        sa.Column("posted_at", duly.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_line", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("closed_at", duly.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("delivery_key"),
    )
    with op.batch_alter_table("slack_messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_slack_messages_user_id"), ["user_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_slack_messages_task_id"), ["task_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_slack_messages_alert_id"), ["alert_id"], unique=False)
    op.create_table(
        "calendar_feeds",
        sa.Column("user_id", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.Column("rotated_at", duly.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade() -> None:
    """Drop both (posted Slack messages are no longer updated; feed URLs start over)."""
    op.drop_table("calendar_feeds")
    with op.batch_alter_table("slack_messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_slack_messages_alert_id"))
        batch_op.drop_index(batch_op.f("ix_slack_messages_task_id"))
        batch_op.drop_index(batch_op.f("ix_slack_messages_user_id"))
    op.drop_table("slack_messages")
