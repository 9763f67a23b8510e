"""Facts carry the stage (from org.yaml's `stages:`) a step visit put its record in.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 06:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """One nullable column: facts recorded before stages had none."""
    # A database an older duly made with create_all is adopted by creating the baseline tables
    # from today's models, which may already have this column
    present = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("step_facts")}
    if "stage" in present:
        return
    with op.batch_alter_table("step_facts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stage", sa.String(length=100), nullable=True))


def downgrade() -> None:
    """Drop it."""
    with op.batch_alter_table("step_facts", schema=None) as batch_op:
        batch_op.drop_column("stage")
