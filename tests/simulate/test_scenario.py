"""Scenario files are checked like every definition: every problem located in the file."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from typer.testing import CliRunner

from duly.cli import app
from duly.language.errors import DefinitionError
from duly.language.loader import Definitions
from duly.language.model import TaskStep
from duly.simulate.scenario import load_scenario

ROOT = Path(__file__).resolve().parents[2]
DEFINITIONS = ROOT / "definitions"
SHIPPED = sorted((DEFINITIONS / "scenarios").glob("*.yaml"))


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "what-if.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path, definitions: Definitions) -> list[str]:
    with pytest.raises(DefinitionError) as caught:
        load_scenario(path, definitions, DEFINITIONS)
    return [str(p) for p in caught.value.problems]


@pytest.mark.parametrize("path", SHIPPED, ids=[p.name for p in SHIPPED])
def test_the_shipped_scenarios_load(path: Path, definitions: Definitions) -> None:
    scenario = load_scenario(path, definitions, DEFINITIONS)
    assert set(scenario.definitions.processes) == set(scenario.spec.arrivals)


def test_a_draft_process_file_runs_instead_of_the_live_one(definitions: Definitions) -> None:
    scenario = load_scenario(
        DEFINITIONS / "scenarios" / "lead-response-30m.yaml", definitions, DEFINITIONS
    )
    draft = scenario.definitions.processes["lead-follow-up"]
    assert draft.version == definitions.processes["lead-follow-up"].version + 1
    step = draft.spec.steps["first-call"]
    assert isinstance(step, TaskStep) and step.sla is not None
    assert str(step.sla.within) == "30 business minutes"


def test_the_assignment_rule_overrides_every_task_step(definitions: Definitions) -> None:
    scenario = load_scenario(
        DEFINITIONS / "scenarios" / "january-least-loaded.yaml", definitions, DEFINITIONS
    )
    rules = {
        step.assign
        for step in scenario.definitions.processes["lead-follow-up"].spec.steps.values()
        if isinstance(step, TaskStep)
    }
    assert rules == {"least-loaded:inbound-sales"}
    live = {
        step.assign
        for step in definitions.processes["lead-follow-up"].spec.steps.values()
        if isinstance(step, TaskStep)
    }
    assert live != rules  # the live definitions are left as they are


def test_team_changes_add_and_remove_reps(tmp_path: Path, definitions: Definitions) -> None:
    path = _write(
        tmp_path,
        "scenario: staffing\nprocesses: [lead-follow-up]\n"
        "arrivals: {lead-follow-up: {per_day: 4}}\n"
        "team:\n  add: {zoe: {team: inbound-sales, like: ana}}\n  remove: [ben]\n",
    )
    scenario = load_scenario(path, definitions, DEFINITIONS)
    team = scenario.definitions.org.teams["inbound-sales"]
    assert team.members == ["ana", "chloe", "zoe"]
    assert "ben" not in scenario.definitions.org.users
    assert "ben" in definitions.org.teams["inbound-sales"].members


def test_problems_point_at_file_line_and_column(tmp_path: Path, definitions: Definitions) -> None:
    path = _write(
        tmp_path,
        "scenario: broken\n"
        "processes: [lead-follow-up, no-such-process]\n"
        "arrivals:\n"
        "  lead-follow-up: {per_day: 4}\n"
        "  quote-follow-up: {per_day: 4}\n"
        "team:\n"
        "  leave:\n"
        "    nobody: [{from: 2030-01-01, to: 2030-01-02}]\n"
        "  add: {zoe: {team: no-team, like: ana}}\n",
    )
    problems = _problems(path, definitions)
    shown = str(path)
    assert f"{shown}:2:29: no live process 'no-such-process'" in "\n".join(problems)
    assert any(p.startswith(f"{shown}:5:3: arrivals for 'quote-follow-up'") for p in problems)
    assert any(p.startswith(f"{shown}:8:5: no user 'nobody'") for p in problems)
    assert any(p.startswith(f"{shown}:9:21: no team 'no-team'") for p in problems)


@pytest.mark.parametrize(
    ("arrivals", "expected"),
    [
        ("{per_day: 4, as_recorded: {from: 2026-01-01, to: 2026-01-31}}", "exactly one of"),
        ("{as_recorded: {from: 2026-02-01, to: 2026-01-01}}", "is before 'from'"),
        ("{per_day: -1}", "greater than 0"),
        ("{per_day: 4, weekdays: {someday: 1}}", "someday"),
    ],
)
def test_bad_arrivals_are_refused(
    tmp_path: Path, definitions: Definitions, arrivals: str, expected: str
) -> None:
    path = _write(
        tmp_path,
        f"scenario: x\nprocesses: [lead-follow-up]\narrivals:\n  lead-follow-up: {arrivals}\n",
    )
    problems = _problems(path, definitions)
    assert any(p.startswith(f"{path}:4:") and expected in p for p in problems), problems


def test_a_habit_needs_a_sane_spread(tmp_path: Path, definitions: Definitions) -> None:
    path = _write(
        tmp_path,
        "scenario: x\nprocesses: [lead-follow-up]\narrivals: {lead-follow-up: {per_day: 4}}\n"
        "behaviour:\n  reps:\n    ana: {p50: 2 hours, p90: 1 hour}\n",
    )
    problems = _problems(path, definitions)
    assert any(f"{path}:6:" in p and "below p50" in p for p in problems), problems


def test_the_cli_prints_the_scenario_schema() -> None:
    result = CliRunner().invoke(app, ["schema", "scenario"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert schema["title"] == "duly scenario definition"
    assert {"processes", "arrivals", "team", "behaviour", "assignment"} <= set(schema["properties"])


def test_the_cli_refuses_a_bad_scenario_with_its_location(tmp_path: Path) -> None:
    path = _write(tmp_path, "scenario: x\nprocesses: [nope]\narrivals: {}\n")
    result = CliRunner().invoke(
        app,
        ["simulate", str(path), "--definitions", str(DEFINITIONS), "--data-dir", str(tmp_path)],
    )
    assert result.exit_code == 1
    assert f"{path}:2:13: no live process 'nope'" in result.output
    assert not (tmp_path / "duly.db").exists()  # nothing ran, nothing was created


def test_the_guides_example_scenario_is_valid(tmp_path: Path, definitions: Definitions) -> None:
    text = (ROOT / "docs" / "language.md").read_text(encoding="utf-8")
    section = text[text.index("## Scenarios") :]
    example = section[section.index("```yaml\n") + 8 : section.index("```\n", 8)]
    scenario = load_scenario(_write(tmp_path, example), definitions, DEFINITIONS)
    assert scenario.spec.assignment == "least-loaded"
    assert scenario.definitions.org.teams["inbound-sales"].members == ["ana", "ben", "zoe"]


def test_a_simulation_run_can_reach_no_host_and_no_crm(monkeypatch: pytest.MonkeyPatch) -> None:
    from duly.notify.channels import outbound_allowed
    from duly.settings import Settings
    from duly.simulate.runner import sealed

    monkeypatch.setenv("DULY_OUTBOUND_HOSTS", "*")
    monkeypatch.setenv("DULY_HUBSPOT_TOKEN", "pat-na1-live")
    live = Settings()
    assert outbound_allowed("https://crm.example.com/hook", live)  # the live install may post
    run = sealed(live)
    for url in ("https://crm.example.com/hook", "http://127.0.0.1:9999/crm/handoff"):
        assert not outbound_allowed(url, run)
    assert run.hubspot_token == "" and run.salesforce_token == "" and run.pipedrive_api_token == ""


def test_a_warm_up_that_would_begin_in_the_past_is_refused(
    tmp_path: Path, definitions: Definitions
) -> None:
    start = date.today() + timedelta(days=3)
    path = _write(
        tmp_path,
        f"scenario: x\nprocesses: [lead-follow-up]\nstart: {start}\nwarm_up: 1\n"
        "arrivals: {lead-follow-up: {per_day: 4}}\n",
    )
    problems = _problems(path, definitions)
    assert any(f"{path}:3:" in p and "warm-up from" in p for p in problems), problems


def test_recorded_arrivals_begin_with_the_warm_up_and_default_start_follows_it(
    tmp_path: Path, definitions: Definitions
) -> None:
    from duly.simulate.runner import first_day, recorded_arrivals
    from duly.store.db import make_engine, migrate, session_factory, write_session
    from duly.store.models import Instance

    engine = make_engine(f"sqlite:///{tmp_path / 'duly.db'}")
    migrate(engine)
    monday = date.today() - timedelta(days=date.today().weekday() + 21)  # three weeks ago
    recorded = [datetime.combine(monday, time(14), UTC), datetime(2000, 1, 3, tzinfo=UTC)]
    with write_session(session_factory(engine)) as session:
        for index, at in enumerate(recorded):
            session.add(
                Instance(id=f"lead-follow-up/L-{index}/r", process="lead-follow-up", version=1,
                         hash="x", business_key=f"L-{index}", started_at=at, data={"n": index})
            )  # fmt: skip
    period = f"{{from: {monday}, to: {monday + timedelta(days=13)}}}"
    path = _write(
        tmp_path,
        "scenario: x\nprocesses: [lead-follow-up]\nwarm_up: 1\narrivals:\n"
        f"  lead-follow-up: {{as_recorded: {period}}}\n",
    )
    scenario = load_scenario(path, definitions, DEFINITIONS)
    start = first_day(scenario)
    next_monday = date.today() + timedelta(days=7 - date.today().weekday())
    assert start == next_monday + timedelta(weeks=1)  # measured after a week of warm-up
    (at, process, data), *others = recorded_arrivals(engine, scenario, start)
    engine.dispose()
    assert not others  # the one from 2000 is outside the period
    assert (process, data) == ("lead-follow-up", {"n": 0})
    zone = ZoneInfo(definitions.processes["lead-follow-up"].calendar.timezone)
    local = recorded[0].astimezone(zone)
    # the warm-up's Monday, at the same local time of day (also across a change to summer time)
    assert at.astimezone(zone) == datetime.combine(next_monday, local.time(), zone)


def test_a_replayed_arrival_keeps_its_local_time_of_day_across_a_change_of_utc_offset() -> None:
    from duly.simulate.runner import _weeks_later

    zone = ZoneInfo("America/New_York")
    november = datetime(2026, 11, 2, 16, 30, tzinfo=zone)  # EST, UTC-5
    july = _weeks_later(november.astimezone(UTC), timedelta(weeks=139), zone)
    assert july.astimezone(zone) == datetime(2029, 7, 2, 16, 30, tzinfo=zone)  # EDT, UTC-4
    assert july.astimezone(zone).utcoffset() != november.utcoffset()


def test_a_backtest_replays_on_days_open_as_the_recorded_ones(definitions: Definitions) -> None:
    from duly.simulate.backtest import replayed_on_calendars

    names = sorted(definitions.processes)
    recorded = date(2026, 11, 2)  # three weeks holding Veterans Day, Wednesday 11 November
    start, replay = replayed_on_calendars(
        definitions, names, recorded, warm_up=1, today=date(2026, 12, 4)
    )
    warm_up = start - timedelta(weeks=1)
    assert warm_up == date(2026, 12, 7)  # the next Monday: no year holds these weeks' holidays
    for name in names:
        live, replayed = definitions.processes[name].calendar, replay.processes[name].calendar
        for offset in range(21):
            day = timedelta(days=offset)
            assert replayed.open_ranges(warm_up + day) == live.open_ranges(recorded + day)
        assert replayed.open_ranges(warm_up - timedelta(days=3)) == live.open_ranges(
            warm_up - timedelta(days=3)
        )  # days outside the replay keep their hours
    us_east = replay.processes["lead-follow-up"].calendar
    assert not us_east.open_ranges(warm_up + timedelta(days=9))  # the holiday, replayed closed
    # Christmas Day, in the replayed weeks, opens as the ordinary Friday it stands for
    assert us_east.open_ranges(date(2026, 12, 25)) == us_east.open_ranges(date(2026, 11, 20))
    assert us_east.open_ranges(date(2026, 12, 25))
    assert not definitions.processes["lead-follow-up"].calendar.open_ranges(date(2026, 12, 25))
