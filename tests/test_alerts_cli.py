"""`duly alerts` says what the API and the page say: open alerts need action, resolved ones
(their task completed, cancelled or reassigned) are listed apart with how they ended."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from duly.cli import app
from duly.store.db import create_all, make_engine, session_factory, write_session
from duly.store.models import Alert
from duly.store.types import utc_now

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """Commands point structlog at the runner's stderr, closed after each: restore it."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def cli(tmp_path: Path) -> tuple[CliRunner, dict[str, str]]:
    url = f"sqlite:///{tmp_path / 'duly.db'}"
    env = {"DULY_DATABASE_URL": url, "DULY_DEFINITIONS": str(ROOT / "definitions")}
    runner = CliRunner()
    assert runner.invoke(app, ["instances"], env=env).exit_code == 0  # creates and syncs
    engine = make_engine(url)
    create_all(engine)
    now = utc_now()
    with write_session(session_factory(engine)) as session:
        session.add(
            Alert(key="a:maria", event_key="a", level="breach", recipient="maria",
                  message="Breach: still open", created_at=now)
        )  # fmt: skip
        session.add(
            Alert(key="b:maria", event_key="b", level="breach", recipient="maria",
                  message="Breach: done since", created_at=now, task_id="t/1",
                  resolved_at=now, resolved_by="chloe",
                  resolution="completed 2 h late by chloe", late_seconds=7200.0)
        )  # fmt: skip
    engine.dispose()
    return runner, env


def test_alerts_lists_open_and_resolved_apart(cli: tuple[CliRunner, dict[str, str]]) -> None:
    runner, env = cli
    needs_action = runner.invoke(app, ["alerts", "--as", "maria"], env=env)
    assert needs_action.exit_code == 0, needs_action.output
    assert "Breach: still open" in needs_action.stdout
    assert "done since" not in needs_action.stdout
    resolved = runner.invoke(app, ["alerts", "--as", "maria", "--state", "resolved"], env=env)
    assert resolved.exit_code == 0, resolved.output
    assert "completed 2 h late by chloe" in resolved.stdout
    assert "still open" not in resolved.stdout
    as_json = runner.invoke(app, ["alerts", "--as", "maria", "--state", "all", "--json"], env=env)
    items = json.loads(as_json.stdout)["items"]
    assert {a["message"]: a["resolution"] for a in items} == {
        "Breach: still open": None,
        "Breach: done since": "completed 2 h late by chloe",
    }
    bad = runner.invoke(app, ["alerts", "--state", "closed"], env=env)
    assert bad.exit_code == 1
    assert "--state must be open, acknowledged, resolved or all, not 'closed'" in bad.output
