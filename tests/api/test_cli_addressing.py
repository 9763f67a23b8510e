"""The command line takes the same instance addresses as the API, and event data under the same
limits, refused before anything reaches Temporal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from duly.cli import app
from duly.store.db import create_all, make_engine, session_factory, write_session
from duly.store.models import Instance
from duly.store.types import utc_now

ROOT = Path(__file__).resolve().parents[2]
# nothing listens there: a command that tried to reach Temporal would fail saying so
NO_TEMPORAL = "127.0.0.1:9"


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """Commands point structlog at their stderr, which the runner closes: restore it after."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def cli(tmp_path: Path) -> tuple[CliRunner, dict[str, str]]:
    """A runner on a fresh SQLite store holding two ended instances of the key L2."""
    url = f"sqlite:///{tmp_path / 'duly.db'}"
    env = {
        "DULY_DATABASE_URL": url,
        "DULY_DEFINITIONS": str(ROOT / "definitions"),
        "DULY_TEMPORAL_ADDRESS": NO_TEMPORAL,
    }
    runner = CliRunner()
    assert runner.invoke(app, ["instances"], env=env).exit_code == 0  # creates and syncs
    engine = make_engine(url)
    create_all(engine)
    now = utc_now()
    with write_session(session_factory(engine)) as session:
        for run, hours_ago in (("aaa111", 5), ("bbb222", 2)):
            session.add(
                Instance(
                    id=f"lead-follow-up/L2/{run}",
                    workflow_id="lead-follow-up/L2",
                    process="lead-follow-up",
                    version=1,
                    hash="0" * 64,
                    business_key="L2",
                    status="completed",
                    result="lost",
                    started_at=now - timedelta(hours=hours_ago),
                    ended_at=now - timedelta(hours=hours_ago - 1),
                )
            )
    engine.dispose()
    return runner, env


def test_show_takes_a_key_for_its_latest_instance_as_state_does(cli) -> None:
    runner, env = cli
    latest = runner.invoke(app, ["show", "lead-follow-up/L2", "--json"], env=env)
    assert latest.exit_code == 0, latest.output
    assert json.loads(latest.stdout)["instance"]["id"] == "lead-follow-up/L2/bbb222"
    earlier = runner.invoke(app, ["show", "lead-follow-up/L2/aaa111"], env=env)
    assert earlier.exit_code == 0, earlier.output
    assert earlier.stdout.startswith("lead-follow-up/L2/aaa111  lead-follow-up v1  key L2")
    nothing = runner.invoke(app, ["show", "lead-follow-up/L3"], env=env)
    assert nothing.exit_code == 1 and "no instance 'lead-follow-up/L3'" in nothing.stderr
    bad = runner.invoke(app, ["show", "lead-follow-up"], env=env)
    assert bad.exit_code == 1
    assert "'lead-follow-up' is not an instance: give its id" in bad.stderr


@pytest.mark.parametrize("command", ["event", "start"])
def test_event_and_start_refuse_data_over_a_limit_before_reaching_temporal(
    cli, command: str
) -> None:
    runner, env = cli
    first = "quote.sent" if command == "event" else "quote-follow-up"
    for data, said in (
        ('{"quote": {"id": "Q-1"}, "a": ' + "[" * 1000 + "]" * 1000 + "}", "data.a[0][0]"),
        ('{"quote": {"id": "Q-1", "amount": ' + "9" * 5000 + "}}", "data.quote.amount: an"),
        ('{"quote": {"id": "Q-1", "amount": NaN}}', "data.quote.amount: NaN"),
    ):
        result = runner.invoke(app, [command, first, "--data", data], env=env)
        assert result.exit_code == 1
        assert f"--data is over duly's limits: {said}" in result.stderr
        assert "Traceback" not in result.output and "Temporal" not in result.stderr


def test_start_refuses_a_key_that_cannot_name_an_instance(cli) -> None:
    runner, env = cli
    data = '{"quote": {"id": "Q-1/abc"}}'
    result = runner.invoke(app, ["start", "quote-follow-up", "--data", data], env=env)
    assert result.exit_code == 1
    assert "the business key 'Q-1/abc' (from {{ quote.id }}) cannot name an instance" in (
        result.stderr
    )
