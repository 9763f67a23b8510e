"""The weekly rollup: written with each new fact, once; equal to a rebuild; backfilled."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Table, insert, select

from activities.messages import RecordStepInput
from duly.language.loader import Definitions
from duly.reports import ReportQuery, resolve
from duly.reports.filters import FACTS, ROLLUP
from duly.reports.rollup import DURATIONS, bucket_number, rebuild
from duly.store import migrations
from duly.store.db import SessionFactory, make_engine, session_factory, write_session
from duly.store.models import Definition, Instance, StepFact

from .conftest import NOW, PROCESS, WEEK_A, WEEK_B, History

COUNTS = ("visits", "first_visits", "seconds_count", "seconds_sum")


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
    compiled = definitions.processes[PROCESS]
    fact: dict[str, Any] = {
        "instance_id": f"{PROCESS}/Q-1",
        "process": PROCESS,
        "version": compiled.version,
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
        connection.execute(
            insert(Definition.__table__),  # type: ignore[attr-defined]
            {
                "process": PROCESS,
                "version": compiled.version,
                "hash": compiled.hash,
                "compiled_json": compiled.model_dump_json(),
            },  # fmt: skip
        )
        connection.execute(
            insert(Instance.__table__),  # type: ignore[attr-defined]
            {
                "id": f"{PROCESS}/Q-1",
                "process": PROCESS,
                "version": compiled.version,
                "hash": compiled.hash,
                "business_key": "Q-1",
                "started_at": WEEK_A,
                "data": {},
            },  # fmt: skip
        )
        for visit, opened in ((1, WEEK_B - timedelta(hours=6)), (2, WEEK_B - timedelta(hours=1))):
            connection.execute(
                insert(StepFact.__table__),  # type: ignore[attr-defined]
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


def test_buckets_are_the_same_in_python_and_in_sql(sessions: SessionFactory) -> None:
    """The histogram written with each fact (Python) and rebuilt or searched (SQL) agree."""
    from sqlalchemy import literal

    from duly.reports.durations import bucket_of

    values = [0.0, 59.99, 60.0, 7199.5, 7200.0, 8099.0, 8100.0, 172_799.9, 172_800.0, 200_000.0]
    with sessions() as session:
        in_sql = [session.execute(select(bucket_of(literal(v)))).scalar() for v in values]
    assert in_sql == [bucket_number(v) for v in values] == [
        0, 0, 1, 119, 120, 120, 121, 303, 304, 311
    ]  # fmt: skip
