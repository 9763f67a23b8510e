"""The command line's people commands: tokens, tasks, alerts, instances, acting as a user."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import structlog
from sqlmodel import select
from typer.testing import CliRunner

from duly.cli import app
from duly.services.auth import hash_token
from duly.store.db import create_all, make_engine, session_factory, write_session
from duly.store.models import Alert, Instance, StepFact, Task, User
from duly.store.types import utc_now

ROOT = Path(__file__).resolve().parents[2]
INSTANCE = "quote-follow-up/Q-9/abc123"
TASK = f"{INSTANCE}/call-customer/1"


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """Commands point structlog at their stderr, which the runner closes after each: restore
    the configuration, or every later test's log line fails on a closed file."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def cli(tmp_path: Path) -> tuple[CliRunner, dict[str, str], str]:
    """A runner whose `duly` uses a fresh SQLite file, seeded with an ended instance, an open
    task of Ana's (in another instance) and alerts for Ana and Maria."""
    url = f"sqlite:///{tmp_path / 'duly.db'}"
    env = {"DULY_DATABASE_URL": url, "DULY_DEFINITIONS": str(ROOT / "definitions")}
    runner = CliRunner()
    assert runner.invoke(app, ["instances"], env=env).exit_code == 0  # creates and syncs
    engine = make_engine(url)
    create_all(engine)
    now = utc_now()
    with write_session(session_factory(engine)) as session:
        for instance_id, status in (
            (INSTANCE, "completed"),
            ("quote-follow-up/Q-8/def", "running"),
        ):
            session.add(
                Instance(
                    id=instance_id,
                    workflow_id=instance_id.rsplit("/", 1)[0],
                    process="quote-follow-up",
                    version=1,
                    hash="0" * 64,
                    business_key=instance_id.split("/")[1],
                    status=status,
                    result="lost" if status == "completed" else None,
                    started_at=now - timedelta(hours=2),
                    ended_at=now if status == "completed" else None,
                )
            )
        session.flush()
        session.add(
            Task(
                id="quote-follow-up/Q-8/def/call-customer/1",
                instance_id="quote-follow-up/Q-8/def",
                process="quote-follow-up",
                step="call-customer",
                visit=1,
                title="Call Lee Park about quote Q-8",
                assignee="ana",
                team="inbound-sales",
                outcomes=["reached", "voicemail", "lost"],
                opened_at=now,
                # two weeks: open hours lie ahead whatever the day (two days from Friday
                # evening are a weekend, with no business time left)
                due_at=now + timedelta(days=14),
            )
        )
        session.add(
            StepFact(
                instance_id=INSTANCE,
                process="quote-follow-up",
                version=1,
                step="call-customer",
                kind="task",
                visit=1,
                assignee="ana",
                opened_at=now - timedelta(hours=2),
                closed_at=now,
                outcome="lost",
                sla_met=True,
            )
        )
        for key, recipient in (("r1:ana", "ana"), ("r2:maria", "maria")):
            session.add(
                Alert(
                    key=key,
                    event_key=key.split(":")[0],
                    instance_id=INSTANCE,
                    level="warning" if recipient == "ana" else "breach",
                    recipient=recipient,
                    message=f"for {recipient}",
                )
            )
    with session_factory(engine)() as session:
        maria_alert = session.exec(select(Alert.id).where(Alert.recipient == "maria")).one()
    engine.dispose()
    return runner, env, str(maria_alert)


def test_token_prints_a_new_token_once_and_stores_only_its_hash(cli, tmp_path: Path) -> None:
    runner, env, _ = cli
    result = runner.invoke(app, ["token", "ana"], env=env)
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith("duly_") and len(token) > 40
    engine = make_engine(env["DULY_DATABASE_URL"])
    with session_factory(engine)() as session:
        assert session.get(User, "ana").token_hash == hash_token(token)
    engine.dispose()
    unknown = runner.invoke(app, ["token", "nobody"], env=env)
    assert unknown.exit_code == 1 and "no active user 'nobody'" in unknown.stderr


def test_tasks_lists_a_users_inbox_as_a_table_or_json(cli) -> None:
    runner, env, _ = cli
    table = runner.invoke(app, ["tasks", "--as", "ana"], env=env)
    assert table.exit_code == 0, table.output
    header, row = table.stdout.splitlines()
    assert header.split() == ["TASK", "TITLE", "ASSIGNEE", "DUE", "LEFT", "OUTCOMES"]
    assert (
        row.startswith("quote-follow-up/Q-8/def/call-customer/1") and "reached | voicemail" in row
    )

    as_json = json.loads(runner.invoke(app, ["tasks", "--as", "ana", "--json"], env=env).stdout)
    assert [t["id"] for t in as_json["items"]] == ["quote-follow-up/Q-8/def/call-customer/1"]
    assert as_json["items"][0]["business_seconds_left"] > 0
    assert runner.invoke(app, ["tasks", "--as", "ben"], env=env).stdout.strip() == "no tasks"
    admin = json.loads(runner.invoke(app, ["tasks", "--json"], env=env).stdout)  # as sam: all
    assert admin["total"] == 1


def test_alerts_and_ack_respect_who_acts(cli) -> None:
    runner, env, maria_alert = cli
    ana = json.loads(runner.invoke(app, ["alerts", "--as", "ana", "--json"], env=env).stdout)
    assert [a["recipient"] for a in ana["items"]] == ["ana"]
    refused = runner.invoke(app, ["ack", maria_alert, "--as", "ana"], env=env)
    assert refused.exit_code == 1
    assert "addressed to maria, who is not in a team you manage" in refused.stderr

    done = runner.invoke(app, ["ack", maria_alert, "--as", "maria"], env=env)
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"alert {maria_alert} acknowledged by maria at ")
    left = runner.invoke(app, ["alerts", "--as", "maria"], env=env).stdout
    assert "for ana" in left and "for maria" not in left


def test_instances_and_show_read_the_record(cli) -> None:
    runner, env, _ = cli
    listed = json.loads(runner.invoke(app, ["instances", "--json"], env=env).stdout)
    assert {i["id"] for i in listed["items"]} == {INSTANCE, "quote-follow-up/Q-8/def"}
    ended = json.loads(
        runner.invoke(app, ["instances", "--status", "completed", "--json"], env=env).stdout
    )
    assert [i["id"] for i in ended["items"]] == [INSTANCE]

    shown = runner.invoke(app, ["show", INSTANCE], env=env)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout.splitlines()[0].startswith(f"{INSTANCE}  quote-follow-up v1  key Q-9")
    assert "status completed (lost)" in shown.stdout
    assert "call-customer  1      task  ana       lost     met" in shown.stdout
    hidden = runner.invoke(app, ["show", INSTANCE, "--as", "dev"], env=env)
    assert hidden.exit_code == 1 and "has no task of yours" in hidden.stderr


def test_reassign_and_complete_check_the_acting_user_before_reaching_temporal(cli) -> None:
    runner, env, _ = cli
    rep = runner.invoke(app, ["reassign", TASK, "ben", "--as", "ana"], env=env)
    assert rep.exit_code == 1
    assert "only managers and admins may reassign" in rep.stderr
    other = runner.invoke(
        app, ["complete", "quote-follow-up/Q-8/def/call-customer/1", "lost", "--as", "ben"], env=env
    )
    assert other.exit_code == 1
    assert "is assigned to ana: you may see only your own tasks" in other.stderr
