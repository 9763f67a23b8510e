from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Engine, event, func
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from duly.language.loader import load_definitions
from duly.language.model import OrgSpec
from duly.settings import Settings
from duly.store.crud import VersionConflict, insert_if_absent, save_definition, sync_org
from duly.store.db import (
    CommitWatch,
    SessionFactory,
    create_all,
    make_engine,
    session_factory,
    write_session,
)
from duly.store.models import (
    Alert,
    Definition,
    Instance,
    Task,
    Team,
    TeamMember,
    User,
)

from .conftest import ORG, T0

NEW_YORK = timezone(timedelta(hours=-5))


@pytest.fixture(scope="module")
def quote_follow_up():
    return load_definitions("definitions").processes["quote-follow-up"]


def count(sessions: SessionFactory, model: type) -> int:
    with sessions() as session:
        return session.exec(select(func.count()).select_from(model)).one()


def test_timestamps_read_back_timezone_aware_in_utc(sessions: SessionFactory) -> None:
    started = datetime(2026, 11, 20, 12, 0, tzinfo=NEW_YORK)
    with write_session(sessions) as session:
        session.add(
            Instance(
                id="p/1", process="p", version=1, hash="h", business_key="1", started_at=started
            )
        )
        session.add(
            Alert(key="k:ana", event_key="k", level="warning", recipient="ana", message="m")
        )
    with sessions() as session:
        instance = session.get_one(Instance, "p/1")
        alert = session.exec(select(Alert)).one()
    assert instance.started_at == started
    assert instance.started_at.tzinfo is UTC
    assert instance.started_at.hour == 17
    assert instance.ended_at is None
    assert alert.created_at.tzinfo is UTC
    assert abs(alert.created_at - datetime.now(UTC)) < timedelta(minutes=1)


def test_naive_timestamps_are_taken_as_utc(sessions: SessionFactory) -> None:
    with write_session(sessions) as session:
        session.add(
            Instance(
                id="p/1",
                process="p",
                version=1,
                hash="h",
                business_key="1",
                started_at=datetime(2026, 1, 1, 9, 0),
            )
        )
    with sessions() as session:
        assert session.get_one(Instance, "p/1").started_at == datetime(2026, 1, 1, 9, tzinfo=UTC)


def test_insert_if_absent_inserts_once(sessions: SessionFactory) -> None:
    row = {
        "id": "p/1",
        "process": "p",
        "version": 1,
        "hash": "h",
        "business_key": "1",
        "started_at": T0,
    }
    with write_session(sessions) as session:
        assert insert_if_absent(session=session, row=Instance(**row))
        assert not insert_if_absent(session=session, row=Instance(**{**row, "hash": "other"}))
    with write_session(sessions) as session:
        assert not insert_if_absent(session=session, row=Instance(**row))
    with sessions() as session:
        assert session.get_one(Instance, "p/1").hash == "h"
    assert count(sessions, Instance) == 1


def test_insert_if_absent_skips_a_duplicate_unique_key_with_a_new_id(
    sessions: SessionFactory,
) -> None:
    with write_session(sessions) as session:
        first = Alert(key="k:maria", event_key="k", level="breach", recipient="maria", message="1")
        again = Alert(key="k:maria", event_key="k", level="breach", recipient="maria", message="2")
        assert insert_if_absent(session=session, row=first)
        assert not insert_if_absent(session=session, row=again)
    assert count(sessions, Alert) == 1


def test_the_database_refuses_an_unknown_task_status(sessions: SessionFactory) -> None:
    with write_session(sessions) as session:
        session.add(
            Instance(id="p/1", process="p", version=1, hash="h", business_key="1", started_at=T0)
        )
    with pytest.raises(IntegrityError), write_session(sessions) as session:
        session.add(
            Task(
                id="p/1/s/1",
                instance_id="p/1",
                process="p",
                step="s",
                visit=1,
                title="t",
                status="doing",
                opened_at=T0,
            )
        )


def test_foreign_keys_are_enforced(sessions: SessionFactory) -> None:
    task = Task(
        id="nope/s/1", instance_id="nope", process="p", step="s", visit=1, title="t", opened_at=T0
    )
    with pytest.raises(IntegrityError), write_session(sessions) as session:
        session.add(task)


def test_save_definition_stores_each_version_once(sessions: SessionFactory, quote_follow_up):
    with write_session(sessions) as session:
        stored = save_definition(session=session, compiled=quote_follow_up)
    with write_session(sessions) as session:
        again = save_definition(session=session, compiled=quote_follow_up)
    assert again.id == stored.id
    assert stored.hash == quote_follow_up.hash
    assert "call-customer" in stored.source
    assert '"timezone":"America/New_York"' in stored.compiled_json
    assert count(sessions, Definition) == 1


def test_save_definition_refuses_new_content_under_the_same_version(
    sessions: SessionFactory, quote_follow_up
) -> None:
    with write_session(sessions) as session:
        save_definition(session=session, compiled=quote_follow_up)
    edited = quote_follow_up.model_copy(update={"hash": "b" * 64})
    with pytest.raises(VersionConflict) as caught, write_session(sessions) as session:
        save_definition(session=session, compiled=edited)
    assert str(caught.value) == (
        "process quote-follow-up version 1 is already stored with different content; "
        "raise `version:` to publish a change"
    )
    with write_session(sessions) as session:
        save_definition(session=session, compiled=edited.model_copy(update={"version": 2}))
    assert count(sessions, Definition) == 2


def test_sync_org_loads_users_teams_and_members_in_order(sessions: SessionFactory) -> None:
    with sessions() as session:
        assert session.get_one(User, "maria").role == "manager"
        assert session.get_one(Team, "inbound-sales").manager == "maria"
        members = session.exec(
            select(TeamMember.user_id)
            .where(TeamMember.team_id == "inbound-sales")
            .order_by(TeamMember.position)
        ).all()
    assert members == ["ana", "ben", "chloe"]


def test_sync_org_deactivates_people_who_left_and_never_deletes_them(
    sessions: SessionFactory,
) -> None:
    data = ORG.model_dump()
    del data["users"]["chloe"]
    del data["teams"]["support"]
    data["users"]["dev"]["name"] = "Dev P."
    data["teams"]["inbound-sales"]["members"] = ["ben", "ana"]
    with write_session(sessions) as session:
        sync_org(session=session, org=OrgSpec.model_validate(data))
    with sessions() as session:
        chloe = session.get_one(User, "chloe")
        support = session.get_one(Team, "support")
        members = session.exec(
            select(TeamMember.user_id, TeamMember.position).order_by(TeamMember.position)
        ).all()
        assert session.get_one(User, "dev").name == "Dev P."
    assert not chloe.active
    assert not support.active
    assert [tuple(m) for m in members] == [("ben", 0), ("ana", 1)]

    with write_session(sessions) as session:
        sync_org(session=session, org=ORG)
    with sessions() as session:
        assert session.get_one(User, "chloe").active
        assert session.get_one(Team, "support").active
    assert count(sessions, User) == len(ORG.users)


def test_sync_org_twice_changes_nothing(sessions: SessionFactory) -> None:
    with write_session(sessions) as session:
        sync_org(session=session, org=ORG)
    assert count(sessions, User) == len(ORG.users)
    assert count(sessions, TeamMember) == 4


def test_make_engine_creates_the_sqlite_folder_and_turns_on_wal(tmp_path) -> None:
    engine: Engine = make_engine(f"sqlite:///{tmp_path / 'new' / 'duly.db'}")
    with engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
    assert (tmp_path / "new").is_dir()


def test_make_engine_uses_psycopg_for_a_plain_postgresql_url() -> None:
    engine = make_engine("postgresql://duly@db:5432/duly")
    assert engine.dialect.driver == "psycopg"
    engine.dispose()


def test_settings_put_the_database_in_the_data_dir(monkeypatch) -> None:
    monkeypatch.setenv("DULY_DATA_DIR", "/srv/duly")
    monkeypatch.delenv("DULY_DATABASE_URL", raising=False)
    assert Settings().database_url == "sqlite:////srv/duly/duly.db"
    monkeypatch.setenv("DULY_DATABASE_URL", "postgresql+psycopg://duly@db/duly")
    monkeypatch.setenv("DULY_SMTP_PORT", "2525")
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://duly@db/duly"
    assert settings.smtp_port == 2525


def test_writers_in_one_process_take_turns_without_sqlite_busy_waits(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'turns.db'}")

    @event.listens_for(engine, "connect")
    def _no_patience(dbapi_connection: Any, _record: Any) -> None:
        # a writer that met SQLite's lock would now fail at once ("database is locked")
        dbapi_connection.execute("PRAGMA busy_timeout=0")

    create_all(engine)
    sessions = session_factory(engine)
    together = threading.Barrier(2)

    def writes(writer: str) -> None:
        together.wait()
        for number in range(20):
            with write_session(sessions) as session:
                session.add(User(id=f"{writer}-{number}", name=writer, email="w@example.com"))
                session.flush()
                time.sleep(0.005)  # hold the write lock a moment: the other writer comes by

    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in [pool.submit(writes, "a"), pool.submit(writes, "b")]:
            done.result()
    with sessions() as session:
        assert session.exec(select(func.count()).select_from(User)).one() == 40


def test_a_commit_watch_tells_a_store_written_since_it_last_looked(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'watched.db'}")
    create_all(engine)
    watch = CommitWatch(engine)
    try:
        assert watch.committed()  # the first look looks
        assert not watch.committed()
        with write_session(session_factory(engine)) as session:
            session.add(User(id="zoe", name="Zoe"))
        assert watch.committed()
        assert not watch.committed()
        with session_factory(engine)() as session:  # a read is no commit
            session.exec(select(User)).all()
        assert not watch.committed()
    finally:
        watch.close()
        engine.dispose()


def test_a_commit_watch_on_a_store_it_cannot_watch_always_says_to_look(engine: Engine) -> None:
    watch = CommitWatch(make_engine("sqlite://") if engine.dialect.name == "sqlite" else engine)
    assert watch.committed() and watch.committed()
    watch.close()
