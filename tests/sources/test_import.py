"""`duly import FILE --source NAME`: open CRM records backfilled with their original times."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from api.conftest import Api
from temporalio.testing import WorkflowEnvironment
from typer.testing import CliRunner

from duly.cli import app
from duly.language.loader import Definitions
from duly.services.context import ServiceContext, TemporalProvider
from duly.settings import Settings
from duly.sources.importer import deliver, plan

ROOT = Path(__file__).resolve().parents[2]


def contacts_csv(folder: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A HubSpot contacts export: Record ID, names, owner id and create date."""
    path = folder / "contacts.csv"
    lines = ["hs_object_id,firstname,lastname,hubspot_owner_id,createdate"]
    lines += [f"{rid},Kim,Lee {rid},{owner},{created}" for rid, owner, created in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_dry_run_prints_what_would_start_and_what_is_past_due(tmp_path: Path) -> None:
    # a contact created a minute ago is still within its one business hour
    recent = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    path = contacts_csv(
        tmp_path, [("501", "90011", "2026-01-06T15:00:00+00:00"), ("502", "90012", recent)]
    )
    result = CliRunner().invoke(
        app,
        [
            "import",
            str(path),
            "--source",
            "hubspot",
            "--object",
            "contact",
            "--dry-run",
            "--definitions",
            str(ROOT / "definitions"),
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert f"{path}:2: would start lead-follow-up (lead.created, 2026-01-06T15:00:00+00:00)" in out
    # 1 business hour on the us-east calendar from Tue 6 Jan 10:00 New York
    assert "lead-follow-up first-call: PAST DUE 2026-01-06T16:00:00+00:00" in out
    assert "lead-follow-up first-call: due " in out
    assert "dry run: 2 instances would start, 1 already past due, 0 records skipped" in out


def test_a_record_dated_in_the_future_is_refused_with_its_line(tmp_path: Path) -> None:
    later = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    path = contacts_csv(
        tmp_path, [("501", "90011", "2026-01-06T15:00:00+00:00"), ("502", "90012", later)]
    )
    result = CliRunner().invoke(
        app,
        ["import", str(path), "--source", "hubspot", "--object", "contact", "--dry-run",
         "--definitions", str(ROOT / "definitions")],
    )  # fmt: skip
    assert result.exit_code != 0
    assert f"{path}:3: contact 502: occurred_at {later}" in result.output
    assert "in the future" in result.output
    assert "Traceback" not in result.output


def test_import_needs_the_object_when_the_source_maps_several(tmp_path: Path) -> None:
    path = contacts_csv(tmp_path, [("503", "90011", "2026-01-06T15:00:00+00:00")])
    result = CliRunner().invoke(
        app,
        [
            "import",
            str(path),
            "--source",
            "hubspot",
            "--dry-run",
            "--definitions",
            str(ROOT / "definitions"),
        ],
    )
    assert result.exit_code == 1
    assert "maps contact, deal: say which with --object" in result.output


def test_records_that_start_nothing_are_skipped(definitions: Definitions, tmp_path: Path) -> None:
    path = tmp_path / "leads.jsonl"
    path.write_text(
        json.dumps({"Id": "00Q1", "IsConverted": "true", "CreatedDate": "2026-01-06T15:00:00Z"})
        + "\n\n"
        + json.dumps({"Id": "00Q2", "IsConverted": "false", "FirstName": "Ada"})
        + "\n",
        encoding="utf-8",
    )
    planned = plan(path, definitions.sources["salesforce"], "Lead", definitions)
    assert planned.skipped == [(1, "lead.converted starts no process")]
    (item,) = planned.events
    assert (item.line, item.event.id) == (3, "salesforce:import:Lead:00Q2")


async def test_importing_twice_starts_nothing_new(
    api: Api, definitions: Definitions, task_queue: str, tmp_path: Path
) -> None:
    created = datetime(2026, 1, 6, 15, tzinfo=UTC)
    ids = [f"9{n}{tmp_path.name[-6:]}" for n in range(3)]
    path = contacts_csv(
        tmp_path,
        [
            (ids[0], "90011", created.isoformat()),
            (ids[1], "90013", created.isoformat()),
            (ids[2], "", created.isoformat()),
        ],
    )
    planned = plan(path, definitions.sources["hubspot"], "contact", definitions)
    assert [p.event.occurred_at for p in planned.events] == [created] * 3
    assert [p.event.data.get("owner") for p in planned.events] == ["ana", "chloe", None]
    context = ServiceContext(
        Settings(task_queue=task_queue),
        definitions,
        api.sessions,
        TemporalProvider.of(api.client),
    )
    progress: list[int] = []
    first = await deliver(context, planned.events, progress.append)
    assert (first.accepted, first.duplicates, sum(progress)) == (3, 0, 3)
    assert sorted(i.split("/")[1] for i in first.instances) == sorted(ids)
    task = await api.open_task(next(i for i in first.instances if f"/{ids[0]}/" in i))
    assert task.assignee == "ana"

    again = await deliver(
        context, plan(path, definitions.sources["hubspot"], "contact", definitions).events
    )
    assert (again.accepted, again.duplicates, again.instances) == (0, 3, [])


def test_sources_lists_each_endpoint_and_whether_its_secret_is_set() -> None:
    result = CliRunner().invoke(app, ["sources", "--definitions", str(ROOT / "definitions")])
    assert result.exit_code == 0, result.output
    assert "POST /api/sources/hubspot" in result.stdout
    assert "DULY_HUBSPOT_CLIENT_SECRET (set)" in result.stdout
    assert "contact  lead.created, lead.deleted" in result.stdout
    assert "Case     case.closed, case.opened" in result.stdout


def test_the_import_command_starts_instances_and_reports_progress(
    time_skipping_env: WorkflowEnvironment,
    task_queue: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DULY_DATABASE_URL", f"sqlite:///{tmp_path / 'duly.db'}")
    monkeypatch.setenv("DULY_TASK_QUEUE", task_queue)
    address = time_skipping_env.client.service_client.config.target_host
    rid = f"7{tmp_path.name[-6:]}"
    path = contacts_csv(tmp_path, [(rid, "90011", "2026-01-06T15:00:00+00:00")])
    command = [
        "import",
        str(path),
        "--source",
        "hubspot",
        "--object",
        "contact",
        "--definitions",
        str(ROOT / "definitions"),
        "--temporal",
        address,
    ]
    first = CliRunner().invoke(app, command)
    assert first.exit_code == 0, first.output
    assert "imported 1/1 (" in first.stderr  # not a terminal: progress as lines
    assert "imported: 1 instance started or reached, 0 records received before" in first.stdout
    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0, again.output
    assert "imported: 0 instances started or reached, 1 record received before" in again.stdout
