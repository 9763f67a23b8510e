"""Deliveries have a lane: alerts are sent before bulk notifications (`deliveries.lane`).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 09:00:00.000000

`deliveries` gains `lane` (`alert` or `bulk`); the deliverer claims due rows lane by lane, so
its index on due rows now leads with status and lane. Deliveries already queued take the lane
of their kind: every `alert.*` is an alert.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen: the table as this revision knows it, whatever the models say later
DELIVERIES = sa.table("deliveries", sa.column("kind", sa.String()), sa.column("lane", sa.String()))


def upgrade() -> None:
    """Add the column (bulk unless the kind is an alert), its check, and the lane-first index."""
    # A database an older duly made with create_all is adopted by creating the baseline tables
    # from today's models, which already have the lane, its check and its index
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("deliveries")}
    if "lane" in present:
        return
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "lane",
                sqlmodel.sql.sqltypes.AutoString(length=10),
                server_default="bulk",
                nullable=False,
            )
        )
    op.execute(DELIVERIES.update().where(DELIVERIES.c.kind.like("alert.%")).values(lane="alert"))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.create_check_constraint("ck_deliveries_lane", "lane IN ('alert', 'bulk')")
        batch_op.drop_index("ix_deliveries_due")
        batch_op.create_index("ix_deliveries_due", ["status", "lane", "next_attempt_at"])


def downgrade() -> None:
    """Drop the lane; the index on due rows is status and time again."""
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_deliveries_due")
        batch_op.drop_constraint("ck_deliveries_lane", type_="check")
        batch_op.drop_column("lane")
        batch_op.create_index("ix_deliveries_due", ["status", "next_attempt_at"])
