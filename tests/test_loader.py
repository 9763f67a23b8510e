"""The happy path of the process language: the shipped definitions load and compile, compiled
processes survive the trip to a workflow and back, their hash pins exactly what they run on, and
`duly validate` reports the result the way admins and CI read it."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from duly.cli import app
from duly.language.compiler import CompiledProcess
from duly.language.durations import Duration
from duly.language.errors import DefinitionError
from duly.language.loader import Definitions, load_definitions, load_paths
from duly.language.model import TaskStep, WaitStep
from duly.language.source import parse_yaml

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = ROOT / "definitions"
TODAY = date(2026, 6, 1)


def load(root: Path = DEFINITIONS) -> Definitions:
    return load_definitions(root, today=TODAY)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    """A copy of the shipped definitions/ folder, to edit."""
    target = tmp_path / "definitions"
    shutil.copytree(DEFINITIONS, target)
    return target


def edit(path: Path, old: str, new: str, *, last: bool = False) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    at = text.rindex(old) if last else text.index(old)
    path.write_text(text[:at] + new + text[at + len(old) :], encoding="utf-8")


# --- the shipped definitions ---------------------------------------------------------------


def test_shipped_definitions_load_every_process_calendar_monitor_and_person() -> None:
    loaded = load()
    assert sorted(loaded.processes) == ["lead-follow-up", "quote-follow-up", "support-case"]
    assert sorted(loaded.calendars) == ["eu-berlin", "us-east"]
    assert sorted(loaded.monitors) == ["support-backlog"]
    assert sorted(loaded.org.teams) == ["inbound-sales", "support"]
    assert loaded.org.teams["inbound-sales"].manager == "maria"
    quote = loaded.processes["quote-follow-up"]
    assert (quote.name, quote.version) == ("quote-follow-up", 1)
    assert quote.file.endswith("definitions/processes/quote-follow-up.yaml")
    assert quote.source == (DEFINITIONS / "processes" / "quote-follow-up.yaml").read_text()
    assert quote.spec.start == "call-customer"
    assert set(quote.templates) == {"quote-summary"}
    assert quote.templates["quote-summary"].subject.startswith("Your quote {{ quote.number }}")


def test_compiled_durations_are_parsed_ready_to_run() -> None:
    quote = load().processes["quote-follow-up"]
    call = quote.step("call-customer")
    assert isinstance(call, TaskStep) and call.sla is not None
    assert isinstance(call.sla.within, Duration)
    assert (call.sla.within.kind, call.sla.within.days) == ("business_days", 2)
    assert [rung.at for rung in call.sla.escalate] == [0.75, 1.0, 1.5]
    wait = quote.step("wait-a-day")
    assert isinstance(wait, WaitStep) and wait.for_ is not None
    assert wait.for_.kind == "business_days"


@pytest.mark.parametrize("name", ["lead-follow-up", "quote-follow-up", "support-case"])
def test_compiled_process_round_trips_through_json_unchanged(name: str) -> None:
    process = load().processes[name]
    again = CompiledProcess.model_validate_json(process.model_dump_json())
    assert again == process
    assert again.hash == process.hash
    assert again.model_dump_json() == process.model_dump_json()
    assert again.calendar.closed_dates == process.calendar.closed_dates


def test_holidays_are_resolved_into_the_compiled_calendar() -> None:
    loaded = load()
    us_east = loaded.calendars["us-east"]
    closed = set(us_east.closed_dates)
    assert date(2026, 11, 26) in closed  # US Thanksgiving, from the holidays package
    assert date(2026, 12, 31) in closed  # holidays.extra
    assert date(2026, 10, 12) not in closed  # Columbus Day, listed under holidays.except
    assert date(2026, 12, 24) in us_east.special_hours
    # the compiled process carries its calendar: a workflow never reads a calendar file
    assert date(2026, 11, 26) in loaded.processes["quote-follow-up"].calendar.closed_dates
    assert date(2026, 3, 8) in set(loaded.calendars["eu-berlin"].closed_dates)  # Berlin only


# --- the content hash ------------------------------------------------------------------------


def hashes(root: Path) -> dict[str, str]:
    return {name: p.hash for name, p in load(root).processes.items()}


def test_hash_is_stable_across_loads_and_folders(copy: Path) -> None:
    assert hashes(DEFINITIONS) == hashes(DEFINITIONS) == hashes(copy)


def test_hash_changes_when_a_step_changes(copy: Path) -> None:
    before = hashes(copy)
    path = copy / "processes" / "quote-follow-up.yaml"
    edit(path, "within: 2 business days", "within: 3 business days")
    after = hashes(copy)
    assert after["quote-follow-up"] != before["quote-follow-up"]
    assert after["lead-follow-up"] == before["lead-follow-up"]


def test_hash_changes_when_the_calendar_or_a_template_it_runs_on_changes(copy: Path) -> None:
    before = hashes(copy)
    edit(copy / "calendars" / "us-east.yaml", '"2026-12-31"', '"2026-12-30"')
    after_calendar = hashes(copy)
    assert after_calendar["quote-follow-up"] != before["quote-follow-up"]
    assert after_calendar["support-case"] == before["support-case"]  # on eu-berlin
    edit(copy / "templates" / "quote-summary.txt", "Best regards", "Kind regards")
    assert hashes(copy)["quote-follow-up"] != after_calendar["quote-follow-up"]


def test_hash_ignores_comments_and_key_order(copy: Path) -> None:
    before = hashes(copy)
    path = copy / "processes" / "quote-follow-up.yaml"
    edit(path, "start: call-customer\n", "# where it begins\nstart: call-customer  # first\n")
    title = "title: Follow up on every sent quote within two business days\n"
    edit(path, title + "version: 1", "version: 1\n" + title.rstrip("\n"))
    edit(path, "won:  {kind: end, result: won}", "won:  {result: won, kind: end}")
    edit(path, "{at: 75%, notify: assignee}", "{notify: assignee, at: 75%}")
    edit(path, "steps:\n", "steps:\n  lost: {kind: end, result: lost}\n")  # steps reordered
    edit(path, "  lost: {kind: end, result: lost}\n", "", last=True)
    assert hashes(copy) == before


# --- YAML 1.1 pitfalls -------------------------------------------------------------------------


def test_yaml_keeps_on_as_a_key_and_times_dates_and_yes_as_text() -> None:
    source = parse_yaml(
        "on: x\nclose: 17:00\nday: 2026-12-24\nanswer: yes\nno: off\nflag: true\n", "f.yaml"
    )
    assert source.data == {
        "on": "x",
        "close": "17:00",
        "day": "2026-12-24",
        "answer": "yes",
        "no": "off",
        "flag": True,
    }


def test_unquoted_times_and_dates_in_a_calendar_still_load(copy: Path) -> None:
    path = copy / "calendars" / "us-east.yaml"
    edit(path, 'mon-fri: "09:00-17:00"', "mon-fri: 09:00-17:00")
    edit(path, '"2026-11-27": "09:00-13:00"', "2026-11-27: 09:00-13:00")
    edit(path, '- "2026-12-31"', "- 2026-12-31")
    us_east = load(copy).calendars["us-east"]
    assert us_east.weekly[0] == [(9 * 60, 17 * 60)]
    assert date(2026, 11, 27) in us_east.special_hours
    assert date(2026, 12, 31) in us_east.closed_dates


def test_process_level_on_events_are_read_as_the_on_key() -> None:
    quote = load().processes["quote-follow-up"]
    assert quote.spec.on == {"quote.accepted": "won", "quote.rejected": "lost"}


# --- duly validate -----------------------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def broken(copy: Path) -> Path:
    """A definitions folder with three problems in two files."""
    edit(copy / "processes" / "quote-follow-up.yaml", "calendar: us-east", "calendar: us-west")
    edit(copy / "processes" / "quote-follow-up.yaml", "lost: lost\n", "lost: lsot\n")
    edit(copy / "org.yaml", "manager: omar", "manager: omer")
    return copy


def test_validate_exits_0_on_the_shipped_definitions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("DULY_DEFINITIONS", raising=False)
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: 3 processes (lead-follow-up, quote-follow-up,")


def test_validate_exits_1_listing_every_problem(broken: Path) -> None:
    result = runner.invoke(app, ["validate", "--definitions", str(broken)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == "3 problems found"
    assert any("org.yaml:" in line and "unknown user 'omer'" in line for line in lines)
    assert any("quote-follow-up.yaml:9:11: unknown calendar 'us-west'" in line for line in lines), (
        lines
    )
    assert any("step 'lsot' is not defined in steps" in line for line in lines)
    assert "Traceback" not in result.output


def test_validate_json_lists_problems_with_file_line_column_path_and_message(
    broken: Path,
) -> None:
    result = runner.invoke(app, ["validate", "--definitions", str(broken), "--format", "json"])
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["valid"] is False
    assert len(body["problems"]) == 3
    for problem in body["problems"]:
        assert set(problem) == {"file", "line", "column", "path", "message"}
    calendar = next(p for p in body["problems"] if p["path"] == "calendar")
    assert calendar["file"].endswith("processes/quote-follow-up.yaml")
    assert (calendar["line"], calendar["column"]) == (9, 11)
    assert calendar["message"].startswith("unknown calendar 'us-west'")


def test_validate_json_on_valid_definitions_says_valid_with_hashes() -> None:
    result = runner.invoke(app, ["validate", "--definitions", str(DEFINITIONS), "--format", "json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["valid"] is True and body["problems"] == []
    assert body["processes"]["quote-follow-up"]["hash"] == load().processes["quote-follow-up"].hash


def test_validate_reads_the_folder_from_duly_definitions(
    broken: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # ./definitions is valid: only the variable can make this fail
    result = runner.invoke(app, ["validate"], env={"DULY_DEFINITIONS": str(broken)})
    assert result.exit_code == 1
    assert "unknown calendar 'us-west'" in result.stderr


def test_validate_option_wins_over_the_environment_variable(
    broken: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    env = {"DULY_DEFINITIONS": str(broken)}
    result = runner.invoke(app, ["validate", "--definitions", str(DEFINITIONS)], env=env)
    assert result.exit_code == 0, result.output


def test_validate_checks_chosen_files_against_the_definitions_folder(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    ok = runner.invoke(app, ["validate", "definitions/processes/support-case.yaml"])
    assert ok.exit_code == 0, ok.output
    assert "1 process (support-case)" in ok.stdout
    bad = runner.invoke(app, ["validate", "tests/broken/unknown-team.yaml"])
    assert bad.exit_code == 1
    assert bad.stderr.splitlines() == [
        "1 problem found",
        "tests/broken/unknown-team.yaml:5:7: unknown team 'inbound-sale' (not in org.yaml); "
        "did you mean 'inbound-sales'? (at team)",
    ]


def test_load_paths_refuses_a_folder_whole_when_one_file_is_broken(broken: Path) -> None:
    with pytest.raises(DefinitionError) as caught:
        load_paths([], root=broken)
    assert {Path(p.file).name for p in caught.value.problems} == {
        "quote-follow-up.yaml",
        "org.yaml",
    }
