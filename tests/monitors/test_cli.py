"""`duly monitors`: each monitor's schedule, line, state and last check."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog
from conftest import ROOT
from typer.testing import CliRunner

from duly.cli import app
from duly.store.db import make_engine, session_factory, write_session
from duly.store.models import MonitorCheck, MonitorState


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """Commands point structlog at their stderr, which the runner closes: restore it after."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_monitors_lists_each_monitor_with_its_state_and_last_check(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'duly.db'}"
    env = {"DULY_DATABASE_URL": url, "DULY_DEFINITIONS": str(ROOT / "definitions")}
    runner = CliRunner()

    before = runner.invoke(app, ["monitors"], env=env)
    assert before.exit_code == 0, before.output
    [header, row] = before.output.strip().splitlines()
    assert header.split()[:3] == ["MONITOR", "SCHEDULE", "MEASURE"]
    assert "support-backlog" in row and "every 15 minutes, in eu-berlin's open hours" in row
    assert "open_tasks above 40 (recovers at 35)" in row and " ok " in row

    checked = datetime(2026, 11, 30, 9, 15, tzinfo=UTC)
    engine = make_engine(url)
    with write_session(session_factory(engine)) as session:
        session.add(
            MonitorState(
                monitor="support-backlog",
                state="alerting",
                last_value=41,
                last_slot="2026-11-30T09:15Z",
                last_checked_at=checked,
                changed_at=checked,
            )
        )
        session.add(
            MonitorCheck(
                monitor="support-backlog",
                slot="2026-11-30T09:15Z",
                value=41,
                state="alerting",
                transition="crossed",
                checked_at=checked,
            )
        )
    engine.dispose()

    after = runner.invoke(app, ["monitors"], env=env)
    assert after.exit_code == 0, after.output
    row = after.output.strip().splitlines()[1]
    assert row.split()[-4:] == ["alerting", "41", "2026-11-30", "09:15Z"]
    shown = json.loads(runner.invoke(app, ["monitors", "--json"], env=env).output)
    assert shown == [
        {
            "monitor": "support-backlog",
            "title": "Keep the support backlog under 40",
            "schedule": "every 15 minutes, in eu-berlin's open hours",
            "measure": "open_tasks above 40 (recovers at 35)",
            "state": "alerting",
            "last_value": 41.0,
            "last_checked_at": "2026-11-30T09:15:00Z",
            "changed_at": "2026-11-30T09:15:00Z",
            "checks": 1,
        }
    ]
