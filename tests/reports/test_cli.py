"""`duly report`: the reports on the command line, as a table, CSV or JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog
from typer.testing import CliRunner

from activities.process import ProcessActivities
from duly.cli import app
from duly.language.loader import load_definitions
from duly.settings import Settings
from duly.store.db import make_engine, session_factory

from .conftest import LABELS, WEEK_A, History, write_worked

ROOT = Path(__file__).resolve().parents[2]
PERIOD = ["--process", "quote-follow-up", "--since", WEEK_A.isoformat(), "--until", "2026-11-30"]


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """Commands point structlog at the runner's stderr, closed after each: restore it."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def cli(tmp_path: Path) -> tuple[CliRunner, dict[str, str]]:
    """A runner whose `duly` uses a fresh SQLite file holding the hand-worked history."""
    url = f"sqlite:///{tmp_path / 'duly.db'}"
    env = {"DULY_DATABASE_URL": url, "DULY_DEFINITIONS": str(ROOT / "definitions")}
    runner = CliRunner()
    first = runner.invoke(app, ["report", "backlog"], env=env)  # creates tables, syncs the org
    assert first.exit_code == 0, first.output
    engine = make_engine(url)
    definitions = load_definitions(ROOT / "definitions")
    write_worked(History(ProcessActivities(session_factory(engine), Settings()), definitions))
    engine.dispose()
    return runner, env


def test_report_by_rep_as_a_table(cli: tuple[CliRunner, dict[str, str]]) -> None:
    runner, env = cli
    result = runner.invoke(app, ["report", *PERIOD, "--by", "rep"], env=env)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == (
        "attainment: quote-follow-up, 2026-11-09 05:00Z to 2026-11-30 00:00Z "
        "(3 weeks, America/New_York), goal 95%"
    )
    assert lines[1].split() == [
        "rep",
        "met",
        "breached",
        "open_overdue",
        "measured",
        "attainment",
        "goal",
        "meets_goal",
        "escalated",
        "rung_1",
        "rung_2",
        "rung_3",
    ]
    ben = next(line.split() for line in lines if line.startswith("ben"))
    assert ben == ["ben", "1", "2", "0", "3", "33.3%", "95.0%", "False", "3", "1", "1", "1"]


def test_report_as_csv_and_json(cli: tuple[CliRunner, dict[str, str]]) -> None:
    runner, env = cli
    as_csv = runner.invoke(
        app, ["report", "consistency", *PERIOD, "--format", "csv", "--as", "maria"], env=env
    )
    assert as_csv.exit_code == 0, as_csv.output
    rows = {row["rep"]: row for row in csv.DictReader(io.StringIO(as_csv.stdout))}
    assert (rows["ana"]["weeks_active"], rows["ana"]["weeks_met"]) == ("3", "2")
    assert rows["ana"]["trend"] == "slipping"
    assert rows["chloe"]["weeks"] == f"{LABELS[1]}=1.000"
    as_json = runner.invoke(
        app, ["report", "durations", *PERIOD, "--by", "week", "--format", "json"], env=env
    )
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body["total"]["p50_seconds"] == 3600
    assert [row["key"] for row in body["rows"]] == list(LABELS)


def test_a_rep_sees_only_their_own(cli: tuple[CliRunner, dict[str, str]]) -> None:
    runner, env = cli
    mine = runner.invoke(app, ["report", *PERIOD, "--by", "rep", "--as", "ana"], env=env)
    assert mine.exit_code == 0, mine.output
    assert [line.split()[0] for line in mine.stdout.splitlines()[2:]] == ["ana", "all"]
    refused = runner.invoke(app, ["report", *PERIOD, "--rep", "ben", "--as", "ana"], env=env)
    assert refused.exit_code == 1
    assert "a rep sees their own figures only, not ben's" in refused.output


def test_bad_options_say_what_is_wrong(cli: tuple[CliRunner, dict[str, str]]) -> None:
    runner, env = cli
    result = runner.invoke(app, ["report", "--by", "colour"], env=env)
    assert result.exit_code == 1
    assert "--by must be one of rep, team, step, week, not 'colour'" in result.output
    result = runner.invoke(app, ["report", "--weeks", "2", "--since", "2026-11-01"], env=env)
    assert result.exit_code == 1 and "give either weeks or since/until" in result.output
    result = runner.invoke(app, ["report", "--process", "nope"], env=env)
    assert result.exit_code == 1 and "no process 'nope'" in result.output


def test_outcomes_by_step_names_the_step_column_once(
    cli: tuple[CliRunner, dict[str, str]],
) -> None:
    runner, env = cli
    result = runner.invoke(app, ["report", "outcomes", *PERIOD, "--by", "step"], env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[1].split() == ["step", "outcome", "count", "share"]
    reached = next(line.split() for line in result.stdout.splitlines() if "reached" in line)
    assert reached[:3] == ["call-customer", "reached", "4"]


def test_a_funnel_across_processes_is_refused_with_the_reason(
    cli: tuple[CliRunner, dict[str, str]],
) -> None:
    runner, env = cli
    result = runner.invoke(app, ["report", "funnel", "--weeks", "3"], env=env)
    assert result.exit_code == 1
    assert "a funnel follows the steps of one process" in result.output


def test_a_reps_funnel_starts_from_the_instances_that_started(
    cli: tuple[CliRunner, dict[str, str]],
) -> None:
    runner, env = cli
    result = runner.invoke(app, ["report", "funnel", *PERIOD, "--rep", "ana"], env=env)
    assert result.exit_code == 0, result.output
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[2:]}
    # ana's instances started in the period
    assert rows["(started)"][1] == "5"
    assert rows["call-customer"][1] == "5" and rows["call-customer"][-1] == "100.0%"
    shares = [float(row[-1].rstrip("%")) for row in rows.values() if row[-1].endswith("%")]
    assert shares and max(shares) <= 100
