"""Each user's own time zone (`users.timezone`, from org.yaml's `timezone:`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 05:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """A nullable column: users without one read times in each process's calendar zone."""
    columns = {column["name"] for column in sa.inspect(op.get_bind()).get_columns("users")}
    if "timezone" in columns:  # an unversioned database made by create_all after this change
        return
    with op.batch_alter_table("users") as batch:
        batch.add_column(
            sa.Column("timezone", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )


def downgrade() -> None:
    """Drop the column; the zones come back from org.yaml on the next sync."""
    with op.batch_alter_table("users") as batch:
        batch.drop_column("timezone")
