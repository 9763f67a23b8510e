"""The command line shows a process's times as the pages do: its calendar's zone, labelled."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from typer.testing import CliRunner

from api.test_cli import ROOT, cli, keep_logging  # noqa: F401  (the fixtures)
from duly.cli import app

NEW_YORK = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d E[SD]T")


def test_tasks_and_instances_show_times_in_the_calendars_zone(
    cli: tuple[CliRunner, dict[str, str], str],  # noqa: F811
) -> None:
    runner, env, _ = cli
    for command in (["tasks", "--as", "ana"], ["instances"]):
        out = runner.invoke(app, command, env=env)
        assert out.exit_code == 0, out.output
        assert NEW_YORK.search(out.stdout), (command, out.stdout)
        assert not re.search(r"\d\d:\d\dZ", out.stdout), (command, out.stdout)


def test_a_user_with_a_timezone_reads_times_in_theirs(
    cli: tuple[CliRunner, dict[str, str], str],  # noqa: F811
    tmp_path: Path,
) -> None:
    runner, env, _ = cli
    definitions = tmp_path / "definitions"
    shutil.copytree(ROOT / "definitions", definitions)
    org = definitions / "org.yaml"
    org.write_text(
        org.read_text().replace(
            "    name: Ana Silva\n", "    name: Ana Silva\n    timezone: Asia/Tokyo\n"
        )
    )
    out = runner.invoke(
        app, ["tasks", "--as", "ana"], env={**env, "DULY_DEFINITIONS": str(definitions)}
    )
    assert out.exit_code == 0, out.output
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d JST", out.stdout), out.stdout
