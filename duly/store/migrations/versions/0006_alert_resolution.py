"""Alerts know their task and are resolved with it; facts keep who closed a reassigned task.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 05:20:00.000000

`alerts` gains `task_id`, `resolved_at`, `resolved_by`, `resolution` and `late_seconds`;
`step_facts` gains `final_assignee`. Alerts already recorded get their task from their rung's
key, and those whose task has closed are resolved, so a manager's list holds only alerts
that still need action.
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

import duly.store.types

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen: the tables as this revision knows them, whatever the models say later
ALERTS = sa.table(
    "alerts",
    sa.column("id", sa.Integer()),
    sa.column("event_key", sa.String()),
    sa.column("instance_id", sa.String()),
    sa.column("clock", sa.String()),
    sa.column("task_id", sa.String()),
    sa.column("resolved_at", duly.store.types.UtcDateTime(timezone=True)),
    sa.column("resolution", sa.Text()),
)
TASKS = sa.table(
    "tasks",
    sa.column("id", sa.String()),
    sa.column("status", sa.String()),
    sa.column("closed_at", duly.store.types.UtcDateTime(timezone=True)),
)


def task_of(event_key: str, instance_id: str | None, clock: str | None) -> str | None:
    """The task an alert raised before this revision was about, from its rung's key.

    A rung's key is `<instance>/step:<step>/<visit>/<rung>`; a reassignment's is
    `<task>/reassign/<hex>`. Process clocks and failures are about no one task.
    """
    if "/reassign/" in event_key:
        return event_key.split("/reassign/", 1)[0]
    if not instance_id or not clock or not clock.startswith("step:"):
        return None
    rest = event_key.removeprefix(f"{instance_id}/{clock}/")
    visit = rest.split("/", 1)[0]
    if rest == event_key or not visit.isdigit():
        return None
    return f"{instance_id}/{clock.removeprefix('step:')}/{visit}"


def upgrade() -> None:
    """Add the columns; give recorded alerts their task, and resolve those of closed tasks.

    A column or index already there is left alone: a database `create_all` made (and
    `duly.store.migrations` adopted at the baseline) may have it already.
    """
    inspector = sa.inspect(op.get_bind())
    have = {c["name"] for c in inspector.get_columns("alerts")}
    indexes = {i["name"] for i in inspector.get_indexes("alerts")}
    new_columns: list[sa.Column[Any]] = [
        sa.Column("task_id", sqlmodel.sql.sqltypes.AutoString(length=400), nullable=True),
        sa.Column("resolved_at", duly.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("resolved_by", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True),
        sa.Column("resolution", sa.Text(), nullable=True),
        sa.Column("late_seconds", sa.Float(), nullable=True),
    ]
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        for column in new_columns:
            if column.name not in have:
                batch_op.add_column(column)
        if "ix_alerts_task_resolved" not in indexes:
            batch_op.create_index("ix_alerts_task_resolved", ["task_id", "resolved_at"])
    if "final_assignee" not in {c["name"] for c in inspector.get_columns("step_facts")}:
        with op.batch_alter_table("step_facts", schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(
                    "final_assignee", sqlmodel.sql.sqltypes.AutoString(length=100), nullable=True
                )
            )
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(ALERTS.c.id, ALERTS.c.event_key, ALERTS.c.instance_id, ALERTS.c.clock)
    ).all()
    for alert_id, event_key, instance_id, clock in rows:
        task_id = task_of(event_key, instance_id, clock)
        if task_id is None:
            continue
        task = bind.execute(
            sa.select(TASKS.c.status, TASKS.c.closed_at).where(TASKS.c.id == task_id)
        ).first()
        values: dict[str, object] = {"task_id": task_id}
        if task is not None and task.status != "open":
            values |= {
                "resolved_at": task.closed_at,
                "resolution": f"its task was {task.status} before alerts were resolved with it",
            }
        bind.execute(sa.update(ALERTS).where(ALERTS.c.id == alert_id).values(**values))


def downgrade() -> None:
    """Drop the columns (resolutions are lost; the alerts stay)."""
    with op.batch_alter_table("step_facts", schema=None) as batch_op:
        batch_op.drop_column("final_assignee")
    with op.batch_alter_table("alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_alerts_task_resolved")
        batch_op.drop_column("late_seconds")
        batch_op.drop_column("resolution")
        batch_op.drop_column("resolved_by")
        batch_op.drop_column("resolved_at")
        batch_op.drop_column("task_id")
