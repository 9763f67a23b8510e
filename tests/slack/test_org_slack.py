"""org.yaml's Slack settings: checked at load time, synced into each person's `slack` channel."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from duly.language.errors import DefinitionError
from duly.language.loader import load_definitions
from duly.store.crud import sync_org
from duly.store.db import create_all, make_engine, session_factory, write_session
from duly.store.models import UserChannel

ROOT = Path(__file__).resolve().parents[2]
APP = "slack: {bot_token: DULY_SLACK_BOT_TOKEN, signing_secret: DULY_SLACK_SIGNING_SECRET}\n"


def definitions_with(tmp_path: Path, header: str, ana: str, ben: str) -> Path:
    folder = tmp_path / "definitions"
    shutil.copytree(ROOT / "definitions", folder)
    org = folder / "org.yaml"
    text = org.read_text()
    text = text.replace("  ana:\n    name: Ana Silva\n", f"  ana:\n    name: Ana Silva\n{ana}", 1)
    text = text.replace("  ben:\n    name: Ben Carter\n", f"  ben:\n    name: Ben Carter\n{ben}", 1)
    org.write_text(header + text)
    return folder


def test_a_slack_id_without_the_app_or_used_twice_is_refused_where_it_is(tmp_path: Path) -> None:
    folder = definitions_with(tmp_path, "", "    slack_id: U0ANA\n", "    slack_id: U0ANA\n")
    with pytest.raises(DefinitionError) as refused:
        load_definitions(folder)
    messages = [str(problem) for problem in refused.value.problems]
    assert any("users.ana.slack_id" in m and "needs the org's Slack app" in m for m in messages)
    assert any("slack_id U0ANA is also ana's" in m for m in messages)


def test_the_secret_itself_is_refused_only_a_variable_name_is_taken(tmp_path: Path) -> None:
    header = "slack: {bot_token: xoxb-123-secret, signing_secret: DULY_SLACK_SIGNING_SECRET}\n"
    folder = definitions_with(tmp_path, header, "", "")
    with pytest.raises(DefinitionError) as refused:
        load_definitions(folder)
    assert any("slack.bot_token" in str(problem) for problem in refused.value.problems)


def test_a_person_with_a_slack_id_hears_through_the_app(tmp_path: Path) -> None:
    folder = definitions_with(tmp_path, APP, "    slack_id: U0ANA\n", "")
    loaded = load_definitions(folder)
    engine = make_engine(f"sqlite:///{tmp_path / 'duly.db'}")
    create_all(engine)
    sessions = session_factory(engine)
    with write_session(sessions) as session:
        sync_org(session=session, org=loaded.org)
    with sessions() as session:
        channel = session.get(UserChannel, ("ana", "slack"))
        assert channel is not None
        assert (channel.target, channel.secret_env) == ("U0ANA", "DULY_SLACK_BOT_TOKEN")
        assert session.get(UserChannel, ("ben", "slack")) is None
    engine.dispose()
