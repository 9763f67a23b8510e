"""The README's first-run walkthrough: what it tells a new user to type exists and fits together.

The walkthrough is run by hand against a real `duly up` when it changes; this keeps it honest
in between: the one-minute process it writes is valid beside the shipped definitions, a breach
reaches the manager within a minute whatever the hour, every command it types is a `duly`
command with the options it uses, and everyone it acts as is in org.yaml.
"""

from __future__ import annotations

import re
import shlex
import shutil
from pathlib import Path

import typer.main

from duly.cli import app
from duly.language.loader import load_definitions

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _blocks() -> list[str]:
    return re.findall(r"```sh\n(.*?)```", README, re.S)


def _walkthrough() -> str:
    """The quick start's shell blocks, from the second terminal to the section's end."""
    section = README[README.index("## Quick start") : README.index("## What it looks like")]
    return "\n".join(re.findall(r"```sh\n(.*?)```", section, re.S))


def _commands(text: str) -> list[list[str]]:
    """Each `duly ...` command line, split as the shell would (comments dropped)."""
    commands = []
    joined = re.sub(r"\n(?=\s)", " ", text)  # an indented line continues the one before
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("duly "):
            commands.append(shlex.split(line, comments=True))
    return commands


def test_the_one_minute_process_is_valid_and_breaches_to_the_manager(tmp_path: Path) -> None:
    heredoc = re.search(
        r"cat > try/processes/call-back\.yaml <<'YAML'\n(.*?)\nYAML\n", README, re.S
    )
    assert heredoc, "the walkthrough writes try/processes/call-back.yaml"
    folder = tmp_path / "try"
    shutil.copytree(ROOT / "definitions", folder)
    (folder / "processes" / "call-back.yaml").write_text(heredoc.group(1) + "\n")
    loaded = load_definitions(folder)
    spec = loaded.processes["call-back"].spec
    sla = spec.steps["call"].sla  # type: ignore[union-attr]
    assert sla is not None
    # wall-clock, so it breaches within a minute at night and at weekends too
    assert sla.within.model_dump()["kind"] == "wall"
    assert sla.within.model_dump()["seconds"] == 60
    assert [(rung.at, rung.notify) for rung in sla.escalate] == [
        (0.5, "assignee"),
        (1.0, "manager"),
    ]
    assert spec.trigger is not None and spec.trigger.event == "callback.requested"


def test_every_command_exists_with_its_options_and_acts_as_known_people() -> None:
    group = typer.main.get_command(app)
    assert hasattr(group, "commands")
    users = set(load_definitions(ROOT / "definitions").org.users)
    walkthrough = _walkthrough()
    commands = _commands(walkthrough)
    assert len(commands) >= 10
    acting: list[tuple[str, str]] = []
    for argv in commands:
        command = group.commands.get(argv[1])
        assert command is not None, f"no command `duly {argv[1]}`"
        known = {opt for param in command.params for opt in getattr(param, "opts", [])}
        for word in argv[2:]:
            if word.startswith("--"):
                assert word in known, f"`duly {argv[1]}` has no option {word}"
        if "--as" in argv:
            who = argv[argv.index("--as") + 1]
            assert who in users, who
            acting.append((argv[1], who))
    # the rep works her own task, the manager acknowledges; another rep is refused
    assert ("complete", "ana") in acting and ("complete", "ben") in acting
    assert ("ack", "maria") in acting
    # an event reaches a live instance: it is sent while the instance's task is open
    lines = [" ".join(argv) for argv in commands]
    sent = next(i for i, line in enumerate(lines) if line.startswith("duly event quote.accepted"))
    assert lines.index("duly tasks --as ana") < sent
    assert not any(line.startswith("duly complete quote-follow-up") for line in lines[:sent])
    assert "reached no instance" not in walkthrough


def test_the_readme_says_the_web_ui_does_not_show_the_demo() -> None:
    where = README.index("http://127.0.0.1:8233")
    assert "not `duly demo`'s history" in README[where : where + 300]
