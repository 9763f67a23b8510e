"""After the demo, the alerts left needing action are about work still waiting: every alert
whose task has closed is resolved, with its date moved back with the rest of the history."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import Session, col, select

from duly.demo import run_demo
from duly.language.loader import Definitions
from duly.settings import Settings
from duly.store.db import make_engine
from duly.store.models import Alert, Task

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


async def test_after_the_demo_no_alert_about_a_closed_task_still_needs_action(
    tmp_path: Path, definitions: Definitions
) -> None:
    settings = Settings(data_dir=tmp_path, definitions=ROOT / "definitions")
    await run_demo(settings, definitions, weeks=1, seed=3, scale=0.6)
    engine = make_engine(settings.database_url)
    try:
        with Session(engine) as session:
            about_tasks = session.exec(
                select(Alert, Task).join(Task, col(Task.id) == col(Alert.task_id))
            ).all()
    finally:
        engine.dispose()
    assert about_tasks, "the demo's ladders raise alerts about tasks"
    assert {task.status for _, task in about_tasks} <= {"completed", "cancelled"}
    unresolved = [alert.key for alert, _ in about_tasks if alert.resolved_at is None]
    assert unresolved == []
    now = datetime.now(UTC)
    for alert, task in about_tasks:
        assert alert.resolved_at is not None
        assert alert.created_at <= alert.resolved_at <= now, alert.key
        assert alert.resolution, alert.key
        # moved back with the history: resolved when its task closed, or when it was handed on
        assert task.closed_at is not None and alert.resolved_at <= task.closed_at, alert.key
