"""The weekly rollup: written with each new fact, once; equal to a rebuild; backfilled."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

from conftest import fresh_postgres_schema
from sqlalchemy import (
    Boolean,
    Connection,
    Engine,
    Float,
    Integer,
    Table,
    column,
    insert,
    select,
    table,
)

from activities.messages import RecordStepInput
from duly.language.loader import Definitions
from duly.reports import ReportQuery, resolve
from duly.reports.filters import FACTS, ROLLUP
from duly.store import migrations
from duly.store.db import SessionFactory, make_engine, session_factory, write_session
from duly.store.rollup import DURATIONS, bucket_number, rebuild
from duly.store.types import JsonDocument, UtcDateTime

from .conftest import NOW, PROCESS, WEEK_A, WEEK_B, History

COUNTS = ("visits", "first_visits", "seconds_count", "seconds_sum")

# The tables as a database from before the rollups (revision 0002) has them
OLD_DEFINITIONS = table(
    "definitions",
    *(column(name) for name in ("process", "version", "hash", "source", "compiled_json")),
    column("created_at", UtcDateTime()),
)
OLD_INSTANCES = table(
    "instances",
    *(column(name) for name in ("id", "workflow_id", "process", "hash", "business_key", "status")),
    column("version", Integer),
    column("data", JsonDocument()),
    column("started_at", UtcDateTime()),
)
OLD_FACTS = table(
    "step_facts",
    *(column(name) for name in ("instance_id", "process", "step", "kind", "assignee", "team")),
    *(column(name, Integer) for name in ("version", "visit", "highest_rung")),
    *(column(name, UtcDateTime()) for name in ("opened_at", "due_at", "closed_at", "breached_at")),
    column("outcome"),
    column("sla_met", Boolean),
    column("business_seconds", Float),
)


def rollup(sessions: SessionFactory, table: Table = ROLLUP) -> dict[str, tuple[Any, ...]]:
    counts = COUNTS if table is ROLLUP else ("visits", "seconds_sum")
    with sessions() as session:
        rows = session.execute(select(table.c.key, *(table.c[n] for n in counts)))
        return {key: tuple(values) for key, *values in rows}


def test_a_retried_fact_counts_once(history: History, sessions: SessionFactory) -> None:
    history.fact("Q-1", WEEK_A + timedelta(hours=14), met=True, rung=0, seconds=3600)
    instance_id = f"{PROCESS}/Q-1"
    with sessions() as session:
        fact = session.execute(select(FACTS)).mappings().one()
    again = RecordStepInput(**{k: v for k, v in fact.items() if k != "id"})
    history.acts.record_step(again)  # the activity retried after its first attempt committed
    with sessions() as session:
        assert session.execute(select(FACTS.c.id)).all() == [(fact["id"],)]
        (row,) = session.execute(select(ROLLUP)).mappings().all()
    assert (row["visits"], row["first_visits"], row["seconds_count"]) == (1, 1, 1)
    assert row["seconds_sum"] == 3600
    assert row["week_start"] == WEEK_A  # Monday 00:00 in New York
    assert row["process"] == PROCESS and instance_id.startswith(row["process"])


def test_the_rollup_equals_a_rebuild_from_the_facts(
    worked: SessionFactory, definitions: Definitions
) -> None:
    kept, timed = rollup(worked), rollup(worked, DURATIONS)
    # 9 calls, 4 summaries, 4 won, 2 lost, 1 support answer: every fact, counted once
    assert sum(counts[0] for counts in kept.values()) == 20
    # The tasks' durations: 9 calls and the support answer
    assert sum(counts[0] for counts in timed.values()) == 10
    with write_session(worked) as session:
        assert rebuild(session) == len(kept)
    assert rollup(worked) == kept
    assert rollup(worked, DURATIONS) == timed


def test_whole_weeks_read_the_rollup_and_other_periods_the_facts(
    sessions: SessionFactory, definitions: Definitions
) -> None:
    with sessions() as session:
        weeks = resolve(session, ReportQuery(process=PROCESS, weeks=3), definitions, NOW)
        aligned = resolve(
            session, ReportQuery(process=PROCESS, since=WEEK_A, until=WEEK_B), definitions, NOW
        )
        mid_week = resolve(
            session,
            ReportQuery(process=PROCESS, since=WEEK_A + timedelta(days=1), until=WEEK_B),
            definitions,
            NOW,
        )
        no_process = resolve(session, ReportQuery(weeks=3), definitions, NOW)
    assert weeks.facts is ROLLUP and aligned.facts is ROLLUP
    assert mid_week.facts is FACTS and no_process.facts is FACTS


def test_upgrading_counts_the_facts_recorded_before(
    tmp_path: Path, definitions: Definitions
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    migrations.upgrade(engine, "0002")
    fact: dict[str, Any] = {
        "instance_id": f"{PROCESS}/Q-1",
        "process": PROCESS,
        "version": definitions.processes[PROCESS].version,
        "step": "call-customer",
        "kind": "task",
        "assignee": "ana",
        "team": "inbound-sales",
        "outcome": "reached",
        "sla_met": True,
        "highest_rung": 0,
        "business_seconds": 600.0,
    }
    with engine.begin() as connection:
        _write_old(connection, definitions, "Q-1")
        for visit, opened in ((1, WEEK_B - timedelta(hours=6)), (2, WEEK_B - timedelta(hours=1))):
            connection.execute(
                insert(OLD_FACTS),
                {**fact, "visit": visit, "opened_at": opened, "closed_at": opened},
            )
    migrations.upgrade(engine)
    rows = rollup(session_factory(engine))
    engine.dispose()
    # Sunday 18:00 and 23:00 in New York (the second Monday 04:00 UTC): both in week A
    (counts,) = rows.values()
    assert counts == (2, 1, 2, 1200.0)
    (key,) = rows
    assert f'"week_start":"{WEEK_A.isoformat()}"' in key


def test_upgrading_counts_what_the_engine_counts_as_it_records(
    worked: SessionFactory, engine: Engine, tmp_path: Path
) -> None:
    """Revision 0004's backfill (frozen in the revision) and the rollups kept fact by fact agree:
    the same rows under the same keys, so facts recorded after upgrading add to them."""
    with _empty_like(engine, tmp_path) as old_database:
        migrations.upgrade(old_database, "0002")
        with old_database.begin() as connection:
            for old in (OLD_DEFINITIONS, OLD_INSTANCES, OLD_FACTS):
                _copy(worked, connection, old)
        migrations.upgrade(old_database)
        migrated = session_factory(old_database)
        assert rollup(migrated) == rollup(worked)
        assert rollup(migrated, DURATIONS) == rollup(worked, DURATIONS)


@contextmanager
def _empty_like(engine: Engine, tmp_path: Path) -> Iterator[Engine]:
    """An empty database on the same backend as `engine`."""
    if engine.dialect.name == "postgresql":
        with fresh_postgres_schema("duly_rollup_upgrade") as postgres:
            yield postgres
        return
    sqlite = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        yield sqlite
    finally:
        sqlite.dispose()


def _copy(source: SessionFactory, connection: Connection, old: Table) -> None:
    """Copy a table's rows from a database at the newest revision: the columns `old` has."""
    today = migrations.metadata().tables[old.name]
    with source() as session:
        rows = session.execute(select(*(today.c[name] for name in old.c.keys()))).mappings()
        connection.execute(insert(old), [dict(row) for row in rows])


def _write_old(connection: Connection, definitions: Definitions, key: str) -> None:
    """The definition of `PROCESS`, and an instance of it for `key`, in a 0002 database."""
    compiled = definitions.processes[PROCESS]
    connection.execute(
        insert(OLD_DEFINITIONS),
        {
            "process": PROCESS,
            "version": compiled.version,
            "hash": compiled.hash,
            "source": "",
            "compiled_json": compiled.model_dump_json(),
            "created_at": WEEK_A,
        },
    )
    connection.execute(
        insert(OLD_INSTANCES),
        {
            "id": f"{PROCESS}/{key}",
            "workflow_id": f"{PROCESS}/{key}",
            "process": PROCESS,
            "version": compiled.version,
            "hash": compiled.hash,
            "business_key": key,
            "status": "running",
            "data": {},
            "started_at": WEEK_A,
        },
    )


def test_buckets_are_the_same_in_python_and_in_sql(sessions: SessionFactory) -> None:
    """The histogram written with each fact (Python) and rebuilt or searched (SQL) agree."""
    from sqlalchemy import literal

    from duly.store.rollup import bucket_of

    values = [0.0, 59.99, 60.0, 7199.5, 7200.0, 8099.0, 8100.0, 172_799.9, 172_800.0, 200_000.0]
    with sessions() as session:
        in_sql = [session.execute(select(bucket_of(literal(v)))).scalar() for v in values]
    assert in_sql == [bucket_number(v) for v in values] == [
        0, 0, 1, 119, 120, 120, 121, 303, 304, 311
    ]  # fmt: skip
