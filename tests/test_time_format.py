"""One rule for times people read: the process's calendar zone, or the reader's own `timezone:`."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlmodel import Session

from duly import timefmt
from duly.language.errors import DefinitionError
from duly.language.loader import load_definitions
from duly.store.crud import sync_org
from duly.store.db import create_all, make_engine
from duly.store.models import User

ROOT = Path(__file__).resolve().parents[1]
AT = datetime(2026, 12, 1, 16, 46, tzinfo=UTC)


def test_a_moment_shows_in_the_process_zone_with_its_abbreviation() -> None:
    assert timefmt.local(AT, timefmt.reader_zone("America/New_York")) == "2026-12-01 11:46 EST"
    assert timefmt.local(None, UTC) == "—"


def test_a_readers_own_zone_wins_and_is_labelled() -> None:
    zone = timefmt.reader_zone("America/New_York", "Europe/Berlin")
    assert timefmt.local(AT, zone) == "2026-12-01 17:46 CET"
    # an unknown or unset zone falls back, never fails
    assert timefmt.reader_zone("America/New_York", "Mars/Olympus") == ZoneInfo("America/New_York")
    assert timefmt.reader_zone(None) == UTC


def test_machines_get_iso_8601_with_an_offset() -> None:
    assert timefmt.iso(AT) == "2026-12-01T16:46:00+00:00"
    assert timefmt.iso(AT.replace(tzinfo=None)) == "2026-12-01T16:46:00+00:00"


def _org_with(tmp_path: Path, zone: str) -> Path:
    copy = tmp_path / "definitions"
    shutil.copytree(ROOT / "definitions", copy)
    org = copy / "org.yaml"
    text = org.read_text()
    assert "    name: Ana Silva\n" in text
    org.write_text(
        text.replace("    name: Ana Silva\n", f"    name: Ana Silva\n    timezone: {zone}\n")
    )
    return copy


def test_a_user_timezone_is_checked_at_load_time(tmp_path: Path) -> None:
    with pytest.raises(DefinitionError) as raised:
        load_definitions(_org_with(tmp_path, "Europe/Lisbn"))
    report = str(raised.value)
    assert "org.yaml" in report and "unknown time zone 'Europe/Lisbn'" in report


def test_a_user_timezone_reaches_the_database(tmp_path: Path) -> None:
    definitions = load_definitions(_org_with(tmp_path, "Europe/Lisbon"))
    assert definitions.org.users["ana"].timezone == "Europe/Lisbon"
    engine = make_engine(f"sqlite:///{tmp_path / 'duly.db'}")
    create_all(engine)
    with Session(engine) as session:
        sync_org(session=session, org=definitions.org)
        session.commit()
        assert session.get_one(User, "ana").timezone == "Europe/Lisbon"
        assert session.get_one(User, "maria").timezone is None
    engine.dispose()


def test_ack_links_verify_across_processes_that_share_only_the_events_secret(
    tmp_path: Path,
) -> None:
    from datetime import timedelta

    from duly.notify.ack_links import AckLinkInvalid, ack_secret, make_token, read_token
    from duly.settings import Settings

    worker = Settings(events_secret="shared", data_dir=tmp_path / "worker")
    web = Settings(events_secret="shared", data_dir=tmp_path / "web")
    assert ack_secret(worker) == ack_secret(web) != "shared"
    token = make_token(ack_secret(worker), alert_key="a:maria", user="maria", expires_at=AT)
    claim = read_token(ack_secret(web), token, now=AT - timedelta(minutes=1))
    assert (claim.alert_key, claim.user) == ("a:maria", "maria")
    with pytest.raises(AckLinkInvalid, match="expired"):
        read_token(ack_secret(web), token, now=AT)
    lone = Settings(data_dir=tmp_path / "lone")
    assert ack_secret(lone) == ack_secret(lone) == (tmp_path / "lone" / "ack.secret").read_text()
    with pytest.raises(AckLinkInvalid, match="not valid"):
        read_token(ack_secret(lone), token, now=AT - timedelta(minutes=1))
