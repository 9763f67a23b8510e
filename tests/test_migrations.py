"""Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import ast
import importlib
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from conftest import ROOT, fresh_postgres_schema
from sqlalchemy import CheckConstraint, Engine, inspect, text
from typer.testing import CliRunner

from duly.cli import app
from duly.store import migrations
from duly.store.db import create_all, make_engine

TABLE_DEFINITION = re.compile(r"^class \w+\(.*table=True", re.MULTILINE)


def modules_with_tables() -> list[str]:
    """Every module of duly's packages that declares a table (`class X(..., table=True)`)."""
    found = []
    for package in ("duly", "activities", "workflows"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if TABLE_DEFINITION.search(path.read_text(encoding="utf-8")):
                found.append(".".join(path.relative_to(ROOT).with_suffix("").parts))
    return found


@pytest.fixture
def postgres_schema() -> Iterator[Engine]:
    """An engine on a fresh, empty PostgreSQL schema, dropped afterwards."""
    with fresh_postgres_schema("duly_migrations") as engine:
        yield engine


@pytest.fixture(params=["sqlite", "postgresql"])
def empty(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """An empty database on each backend."""
    if request.param == "postgresql":
        yield request.getfixturevalue("postgres_schema")
        return
    engine = make_engine(f"sqlite:///{tmp_path / 'duly.db'}")
    yield engine
    engine.dispose()


def differences(engine: Engine) -> list[object]:
    """What autogenerate finds between the database and the models, plus CHECK constraints
    (which autogenerate does not compare)."""
    with engine.connect() as connection:
        opts = {"compare_type": True, "include_object": migrations.include_object}
        context = MigrationContext.configure(connection, opts=opts)
        found: list[object] = list(compare_metadata(context, migrations.metadata()))
        inspector = inspect(connection)
        existing = set(inspector.get_table_names())  # a missing table is reported above
        for table in migrations.metadata().sorted_tables:
            if table.name not in existing:
                continue
            wanted = {
                str(c.name): _normal(str(c.sqltext))
                for c in table.constraints
                if isinstance(c, CheckConstraint)
            }
            present = {
                str(c["name"]): _normal(c["sqltext"])
                for c in inspector.get_check_constraints(table.name)
            }
            if wanted != present:
                found.append(("check constraints", table.name, wanted, present))
    return found


def _normal(sql: str) -> str:
    """A CHECK's SQL, as PostgreSQL or SQLite give it back, reduced to compare: its quoted
    words in order (`level IN ('a', 'b')` and `(level)::text = ANY (...)` both give a, b)."""
    return ",".join(re.findall(r"'([^']*)'", sql)) or re.sub(r"\W", "", sql)


def test_every_module_with_tables_is_known_to_the_migrations() -> None:
    modules = modules_with_tables()
    assert "duly.store.models" in modules
    assert set(modules) <= set(migrations.TABLE_MODULES), (
        "a module declares tables the migrations don't compare against: add it to "
        "duly.store.migrations.TABLE_MODULES and write a revision (see its README.md)"
    )


def test_revisions_take_nothing_from_duly_but_column_types() -> None:
    """A revision runs against the schema of its time, so it must not use today's models or
    code (a later column would break it): it defines the tables it reads (`sa.table()`)."""
    allowed = {"duly.store.types"}
    for path in sorted((migrations.HERE / "versions").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                ours = name.partition(".")[0] in ("duly", "workflows", "activities")
                assert not ours or name in allowed, f"{path.name} imports {name}"


def test_migrated_schema_matches_the_models(empty: Engine) -> None:
    for module in modules_with_tables():
        importlib.import_module(module)
    assert migrations.current(empty) is None
    assert migrations.upgrade(empty) == migrations.head()

    assert differences(empty) == []
    tables = set(inspect(empty).get_table_names())
    assert set(migrations.metadata().tables) <= tables
    assert migrations.upgrade(empty) == migrations.head()  # again: nothing to do


def test_every_revision_downgrades_and_upgrades_again(empty: Engine) -> None:
    migrations.upgrade(empty)
    migrations.downgrade(empty, "base")
    assert set(inspect(empty).get_table_names()) <= {"alembic_version"}
    migrations.upgrade(empty)
    assert differences(empty) == []


def test_a_database_made_before_migrations_is_adopted_and_keeps_its_rows(empty: Engine) -> None:
    # An older duly made its tables with create_all, and user_channels came later still
    tables = migrations.metadata().tables
    old_tables = [tables[name] for name in migrations.BASELINE_TABLES if name != "user_channels"]
    migrations.metadata().create_all(empty, tables=old_tables)
    with empty.begin() as connection:
        connection.execute(
            text("INSERT INTO users (id, name, role, active) VALUES ('ana', 'Ana', 'rep', true)")
        )

    assert migrations.upgrade(empty) == migrations.head()

    assert differences(empty) == []
    with empty.connect() as connection:
        assert connection.execute(text("SELECT name FROM users")).scalars().all() == ["Ana"]


def test_a_database_made_by_create_all_with_todays_models_is_adopted_at_head(
    empty: Engine,
) -> None:
    migrations.metadata().create_all(empty)  # unversioned, but already the newest schema
    with empty.begin() as connection:  # and a table that is not duly's (APScheduler's jobs)
        connection.execute(text("CREATE TABLE apscheduler_jobs (id VARCHAR(191) PRIMARY KEY)"))

    assert migrations.upgrade(empty) == migrations.head()
    assert differences(empty) == []


def test_deliveries_queued_before_lanes_take_the_lane_of_their_kind(empty: Engine) -> None:
    migrations.upgrade(empty, "0012")
    with empty.begin() as connection:
        connection.execute(
            text("INSERT INTO users (id, name, role, active) VALUES ('ana', 'Ana', 'rep', true)")
        )
        for key, kind in (("a:email", "alert.breach"), ("t:email", "task.assigned")):
            connection.execute(
                text(
                    "INSERT INTO deliveries (key, user_id, channel, kind, subject, body, payload,"
                    " status, attempts, next_attempt_at, created_at) VALUES (:key, 'ana', 'email',"
                    " :kind, 's', 'b', '{}', 'pending', 0, :now, :now)"
                ),
                {"key": key, "kind": kind, "now": "2026-12-01 09:00:00"},
            )

    assert migrations.upgrade(empty) == migrations.head()

    with empty.connect() as connection:
        lanes = connection.execute(text("SELECT key, lane FROM deliveries ORDER BY key"))
        assert lanes.all() == [("a:email", "alert"), ("t:email", "bulk")]
    migrations.downgrade(empty, "0012")
    assert "lane" not in {column["name"] for column in inspect(empty).get_columns("deliveries")}


def test_create_all_and_migrations_build_the_same_schema(tmp_path: Path) -> None:
    # Tests build their databases with create_all: it must be the schema production migrates to
    engine = make_engine(f"sqlite:///{tmp_path / 'created.db'}")
    create_all(engine)
    assert differences(engine) == []
    engine.dispose()


def test_workers_starting_together_migrate_once(postgres_schema: Engine) -> None:
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            migrations.upgrade(postgres_schema)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert migrations.current(postgres_schema) == migrations.head()
    assert differences(postgres_schema) == []


def test_duly_db_upgrade_and_current(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    runner = CliRunner()

    before = runner.invoke(app, ["db", "current"], env={"DULY_DATABASE_URL": url})
    assert before.exit_code == 0, before.output
    assert "not migrated" in before.output

    upgraded = runner.invoke(app, ["db", "upgrade"], env={"DULY_DATABASE_URL": url})
    assert upgraded.exit_code == 0, upgraded.output
    assert f"at revision {migrations.head()}" in upgraded.output

    after = runner.invoke(app, ["db", "current"], env={"DULY_DATABASE_URL": url})
    assert after.exit_code == 0, after.output
    assert f"{migrations.head()} (head)" in after.output


def test_duly_db_upgrade_says_when_the_database_is_unreachable() -> None:
    url = "postgresql+psycopg://nobody@127.0.0.1:1/duly?connect_timeout=2"
    result = CliRunner().invoke(app, ["db", "upgrade"], env={"DULY_DATABASE_URL": url})
    assert result.exit_code == 1
    assert "cannot reach the database" in result.output
    assert "127.0.0.1:1" in result.output
