"""`duly demo`: a short history written by the real worker on the time-skipping server."""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, func, select
from typer.testing import CliRunner

from duly.cli import app
from duly.demo import NOT_SENT, SHIPPED, DemoRefused, assign_profiles, per_rep, run_demo
from duly.demo_progress import Bar, DemoProgress, WeekLines, reporter
from duly.language.loader import Definitions
from duly.logs import configure
from duly.settings import Settings
from duly.store.db import make_engine
from duly.store.models import Alert, Delivery, Instance, SlaEventRow, StepFact, Task

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def _rows(engine, statement):
    with Session(engine) as session:
        return session.exec(statement).all()


async def test_a_short_demo_writes_every_process_with_per_rep_differences(
    tmp_path: Path, definitions: Definitions
) -> None:
    settings = Settings(data_dir=tmp_path, definitions=ROOT / "definitions")
    before = datetime.now(UTC)
    seen: list[DemoProgress] = []
    result = await run_demo(settings, definitions, weeks=1, seed=3, scale=0.6, progress=seen.append)
    engine = make_engine(settings.database_url)

    # it said how far it was all along: the simulated period covered, the instances started
    assert len(seen) > 10
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert seen[-1].fraction == 1.0 and seen[-1].weeks_total == 2
    assert seen[-1].instances == sum(result.instances.values())
    assert seen[-1].completions <= result.completions

    # every shipped process ran, and wrote its fact rows through the real activities
    facts = dict(_rows(engine, select(StepFact.process, func.count()).group_by(StepFact.process)))
    assert set(facts) == set(SHIPPED)
    assert all(count >= 3 for count in facts.values()), facts
    assert result.facts == facts

    # the reliable rep meets the SLA more often than the one who is often late
    profiles = assign_profiles(definitions)
    assert (profiles["ana"].name, profiles["ben"].name) == ("reliable", "often late")
    spread = per_rep(engine)

    def met_share(rep: str) -> float:
        counts = spread[rep]
        return counts["met"] / (counts["met"] + counts["breached"])

    assert met_share("ana") > met_share("ben")
    assert spread["ben"]["breached"] >= 1

    # late reps trip the ladder: breach alerts, SLA events; every instance has ended
    assert result.alerts.get("breach", 0) >= 1
    acked = _rows(
        engine,
        select(
            Alert.created_at, Alert.acknowledged_at, Alert.recipient, Alert.acknowledged_by
        ).where(col(Alert.acknowledged_at).is_not(None)),
    )
    assert acked, "most alerts are acknowledged"
    assert all(made <= at <= datetime.now(UTC) and who == by for made, at, who, by in acked)
    assert _rows(engine, select(func.count()).select_from(SlaEventRow))[0] > 0
    statuses = set(_rows(engine, select(Instance.status)))
    assert statuses == {"completed"}
    assert _rows(engine, select(func.count()).select_from(Task).where(Task.status == "open")) == [0]

    # the history lies in the past: it ends now, never later
    latest = _rows(engine, select(func.max(StepFact.closed_at)))[0]
    assert latest <= datetime.now(UTC)
    earliest = _rows(engine, select(func.min(StepFact.opened_at)))[0]
    assert (before - earliest).days >= 7
    assert _rows(engine, select(func.max(Alert.created_at)))[0] <= datetime.now(UTC)

    # nothing was or will be sent: the queued notifications are marked as the demo's
    deliveries = _rows(engine, select(Delivery.status, Delivery.last_error))
    assert deliveries, "assignments and alerts queue notifications"
    assert set(deliveries) == {("failed", NOT_SENT)}
    assert result.deliveries_marked == len(deliveries)

    # a second run would mix two histories: refused unless asked for
    with pytest.raises(DemoRefused, match="already has .* instances; .*--reset.*--force"):
        await run_demo(settings, definitions, weeks=1)
    count = _rows(engine, select(func.count()).select_from(Instance))[0]
    assert count == sum(result.instances.values())

    # --reset replaces the history; the same seed writes the same one again
    first = _fingerprint(engine)
    again = await run_demo(settings, definitions, weeks=1, seed=3, scale=0.6, reset=True)
    assert again.instances == result.instances
    assert _fingerprint(engine) == first
    engine.dispose()


async def test_a_history_ending_at_a_named_moment_keeps_that_periods_holidays(
    tmp_path: Path, definitions: Definitions
) -> None:
    settings = Settings(data_dir=tmp_path, definitions=ROOT / "definitions")
    ends = datetime(2026, 11, 20, 12, tzinfo=UTC)  # new work from 6 to 13 November
    result = await run_demo(settings, definitions, weeks=1, seed=2, ends=ends)
    engine = make_engine(settings.database_url)

    assert result.last_day is not None and result.last_day <= ends.date()
    with pytest.raises(DemoRefused, match="must end by now; 2099-01-01T00:00:00"):
        await run_demo(settings, definitions, ends=datetime(2099, 1, 1, tzinfo=UTC), reset=True)
    started = _rows(engine, select(Instance.process, Instance.started_at))
    assert started and all(at.replace(tzinfo=UTC) < ends for _, at in started)
    # it ran ahead on calendars open as these days were: nothing arrived on Veterans Day,
    # Wednesday 11 November 2026, though the Wednesday 52 weeks later is an ordinary day
    for process, at in started:
        calendar = definitions.processes[process].calendar
        local = at.replace(tzinfo=UTC).astimezone(ZoneInfo(calendar.timezone))
        minute = local.hour * 60 + local.minute
        hours = calendar.open_ranges(local.date())
        # (an arrival at 12:59 starts its instance a moment later)
        assert any(lo <= minute < hi + 2 for lo, hi in hours), (process, local, hours)
    # and work came on the Thursday after it, whose day 52 weeks later is Veterans Day 2027
    new_york = ZoneInfo("America/New_York")
    assert any(at.replace(tzinfo=UTC).astimezone(new_york).day == 12 for _, at in started)
    engine.dispose()


def _fingerprint(engine) -> list[tuple]:
    """Who did what with which result, without the run ids and timestamps a run makes anew."""
    rows = _rows(
        engine,
        select(
            Instance.business_key,
            StepFact.step,
            StepFact.visit,
            StepFact.assignee,
            StepFact.outcome,
            StepFact.sla_met,
        ).join(Instance, col(Instance.id) == col(StepFact.instance_id)),
    )
    return sorted(rows, key=repr)


def test_the_command_refuses_a_database_with_instances(tmp_path: Path, definitions) -> None:
    from duly.store.db import session_factory, write_session
    from duly.worker import prepare_database

    settings = Settings(data_dir=tmp_path, definitions=ROOT / "definitions")
    engine = prepare_database(settings, definitions)
    with write_session(session_factory(engine)) as session:
        session.add(
            Instance(
                id="quote-follow-up/Q-1/abc",
                process="quote-follow-up",
                version=1,
                hash="a" * 64,
                business_key="Q-1",
                started_at=datetime.now(UTC),
            )
        )
    engine.dispose()
    outcome = CliRunner().invoke(
        app, ["demo", "--data-dir", str(tmp_path), "--definitions", str(ROOT / "definitions")]
    )
    assert outcome.exit_code == 1
    assert "already has 1 instances" in outcome.output
    assert "--reset" in outcome.output
    engine = make_engine(settings.database_url)
    assert _rows(engine, select(col(Instance.id))) == ["quote-follow-up/Q-1/abc"]
    engine.dispose()


async def test_an_interrupted_demo_leaves_no_half_history_and_nothing_to_send(
    tmp_path: Path, definitions: Definitions
) -> None:
    settings = Settings(data_dir=tmp_path, definitions=ROOT / "definitions")
    # six weeks: a short run can end before its third delivery is seen, with nothing to interrupt
    running = asyncio.create_task(run_demo(settings, definitions, weeks=6, scale=0.5))
    engine = make_engine(settings.database_url)
    for _ in range(600):  # until the engine has written a few instances and notifications
        await asyncio.sleep(0.05)
        if tmp_path.joinpath("duly.db").exists():
            try:
                if _rows(engine, select(func.count()).select_from(Delivery))[0] >= 3:
                    break
            except OperationalError:
                pass  # the tables are being created
    else:
        pytest.fail("the demo wrote nothing within 30 s")
    assert not running.done(), "the demo ended before it could be interrupted"
    running.cancel()  # Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await running
    for model in (Instance, Task, StepFact, Alert, Delivery):
        assert _rows(engine, select(func.count()).select_from(model)) == [0], model
    engine.dispose()


# --- how far it is, and where the engine's log goes ------------------------------------------


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress(days: float, instances: int) -> DemoProgress:
    return DemoProgress(done=days, total=14.0, instances=instances, completions=instances * 2)


def test_off_a_terminal_it_prints_a_line_per_simulated_week() -> None:
    out = io.StringIO()
    lines = reporter(out)
    assert isinstance(lines, WeekLines)
    for tenth in range(0, 141):  # the driver reports far more often than once a week
        lines(_progress(tenth / 10, tenth))
    lines(_progress(14.0, 140))  # reported again at the end: nothing new to say
    printed = out.getvalue().splitlines()
    assert [line.split(" simulated")[0] for line in printed] == [
        "demo: week 1 of 2",
        "demo: week 2 of 2",
    ]
    assert "(50%), 70 instances started, 140 tasks completed" in printed[0]
    assert "(100%), 140 instances started" in printed[1]


def test_on_a_terminal_it_draws_a_bar_of_weeks_and_instances() -> None:
    screen = Terminal()
    bar = reporter(screen)
    assert isinstance(bar, Bar)
    for day in range(15):
        bar(_progress(day, day * 3))
    bar.close()
    drawn = screen.getvalue()
    assert "Simulating" in drawn and "\r" in drawn  # redrawn in place
    assert "week 2/2, 42 instances" in drawn
    assert "100%" in drawn
    assert drawn.count("\n") == 1  # one line, ended once


@pytest.fixture
def logging_restored():
    yield
    configure(Settings(), level=logging.WARNING)


@pytest.mark.parametrize("verbose", [False, True])
def test_the_command_shows_progress_and_logs_the_engine_to_a_file_unless_verbose(
    tmp_path: Path, verbose: bool, logging_restored: None, capfd: pytest.CaptureFixture[str]
) -> None:
    args = ["demo", "--weeks", "1", "--scale", "0.3", "--data-dir", str(tmp_path)]
    outcome = CliRunner().invoke(
        app,
        [*args, "--definitions", str(ROOT / "definitions")] + (["--verbose"] if verbose else []),
    )
    assert outcome.exit_code == 0, outcome.output
    assert "demo: week 1 of 2 simulated" in outcome.output
    assert "demo: week 2 of 2 simulated (100%)" in outcome.output
    assert "duly demo wrote" in outcome.output
    assert "the Temporal Web UI does not show it" in outcome.output
    engine_lines = [line for line in outcome.output.splitlines() if "[info     ]" in line]
    log_file = tmp_path / "demo.log"
    if verbose:
        assert len(engine_lines) > 20  # the engine's log, here
        assert not log_file.exists()
    else:
        assert engine_lines == []
        # not even the SDK's core, which writes to the terminal itself unless told otherwise
        terminal = capfd.readouterr()
        assert "sdk_core" not in terminal.out + terminal.err
        assert f"the engine's log goes to {log_file}" in outcome.output
        logged = log_file.read_text()
        assert logged.count("[info     ]") > 20 and "task_opened" in logged
        assert "\x1b[" not in logged  # plain text, no terminal colours
