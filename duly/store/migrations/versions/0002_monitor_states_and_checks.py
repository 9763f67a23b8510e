"""Monitor states and checks; `threshold` and `recovery` alert levels (duly.monitors).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 04:38:25.901815
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import duly.store.types

OLD_LEVELS = "level IN ('warning', 'breach', 'escalation', 'failure')"
NEW_LEVELS = "level IN ('warning', 'breach', 'escalation', 'failure', 'threshold', 'recovery')"

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Monitor states and checks."""
    op.create_table(
        "monitor_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("monitor", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("slot", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("transition", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("checked_at", duly.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("monitor", "slot", name="uq_monitor_checks_slot"),
    )
    with op.batch_alter_table("monitor_checks", schema=None) as batch_op:
        batch_op.create_index(
            "ix_monitor_checks_monitor_checked", ["monitor", "checked_at"], unique=False
        )

    op.create_table(
        "monitor_states",
        sa.Column("monitor", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=False),
        sa.Column("state", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=False),
        sa.Column("last_value", sa.Float(), nullable=True),
        sa.Column("last_slot", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("last_checked_at", duly.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("changed_at", duly.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.CheckConstraint("state IN ('ok', 'alerting')", name="ck_monitor_states_state"),
        sa.PrimaryKeyConstraint("monitor"),
    )
    # Autogenerate does not see CHECK constraints: written by hand
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_constraint("ck_alerts_level", type_="check")
        batch_op.create_check_constraint("ck_alerts_level", NEW_LEVELS)


def downgrade() -> None:
    """Undo: monitor states and checks; the two alert levels (their alerts are deleted)."""
    op.execute("DELETE FROM alerts WHERE level IN ('threshold', 'recovery')")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_constraint("ck_alerts_level", type_="check")
        batch_op.create_check_constraint("ck_alerts_level", OLD_LEVELS)
    op.drop_table("monitor_states")
    with op.batch_alter_table("monitor_checks", schema=None) as batch_op:
        batch_op.drop_index("ix_monitor_checks_monitor_checked")

    op.drop_table("monitor_checks")
