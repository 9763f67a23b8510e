"""Reports over 1,000,000 fact rows on SQLite and PostgreSQL, beside a plain GROUP BY.

For each database the bench fills a fresh `step_facts` table (SQLite: one executemany in one
transaction; PostgreSQL: COPY) with `--facts` rows of quote-follow-up spread over `--weeks`
weeks, `--reps` reps in teams of five, four facts per instance (the call task with its SLA,
the summary action, the decision, the end), plus `--open` open tasks. Then, best of `--runs`:

- the baseline: `SELECT assignee, count(*), sum(business_seconds) FROM step_facts GROUP BY
  assignee`, a plain aggregate over the same table;
- every report from `duly.reports`, over the whole period (so each reads every row the
  baseline reads), and prints its time and its ratio to the baseline. Target: 2x.

    .venv/bin/python bench/reports.py                      # 1M facts, SQLite and PostgreSQL
    .venv/bin/python bench/reports.py --facts 100000 --db sqlite

PostgreSQL comes from DULY_TEST_POSTGRES_URL (default: the local trust-auth server); the bench
works in a schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, create_engine, text

from duly.language.loader import Definitions, load_definitions
from duly.reports import REPORTS, ReportQuery
from duly.store.db import create_all, make_engine, session_factory, write_session
from duly.store.rollup import rebuild

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get(
    "DULY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
PROCESS = "quote-follow-up"
ZONE = "America/New_York"  # quote-follow-up's calendar (us-east)
BASELINE = "SELECT assignee, count(*), sum(business_seconds) FROM step_facts GROUP BY assignee"
FACT_COLUMNS = (
    "instance_id, process, version, step, kind, visit, assignee, team, opened_at, due_at, "
    "closed_at, outcome, sla_met, breached_at, highest_rung, business_seconds"
)
INSTANCE_COLUMNS = "id, workflow_id, process, version, hash, business_key, status, data, started_at"
TASK_COLUMNS = (
    "id, instance_id, process, step, visit, title, assignee, team, status, fields, outcomes, "
    "opened_at, due_at"
)


def generate(
    facts: int, weeks: int, reps: int, open_tasks: int, end: datetime, seed: int = 7
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Instances, facts and open tasks: each rep with their own skill (met rate, speed)."""
    rng = random.Random(seed)
    start = end - timedelta(weeks=weeks)
    span = (end - start).total_seconds()
    people = [(f"rep-{i:03d}", f"team-{i // 5:02d}") for i in range(reps)]
    skill = {rep: (rng.uniform(0.7, 0.99), rng.uniform(1800, 40_000)) for rep, _ in people}
    instances: list[tuple[Any, ...]] = []
    rows: list[tuple[Any, ...]] = []
    tasks: list[tuple[Any, ...]] = []
    for n in range(facts // 4):
        instance_id = f"{PROCESS}/Q-{n}/r"
        rep, team = people[n % reps]
        met_rate, speed = skill[rep]
        opened = start + timedelta(seconds=rng.random() * span)
        instances.append(
            (
                instance_id,
                f"{PROCESS}/Q-{n}",
                PROCESS,
                1,
                "0" * 64,
                f"Q-{n}",
                "completed",
                "{}",
                opened,
            )  # fmt: skip
        )
        met = rng.random() < met_rate
        seconds = rng.expovariate(1 / speed)
        due = opened + timedelta(days=2)
        closed = opened + timedelta(seconds=seconds * 3)
        outcome = rng.choices(("reached", "voicemail", "lost"), (6, 3, 1))[0]
        rung = 0 if met else rng.choice((1, 2, 3))
        rows.append(
            (
                instance_id,
                PROCESS,
                1,
                "call-customer",
                "task",
                1,
                rep,
                team,
                opened,
                due,
                closed,
                outcome,
                met,
                None if met else due,
                rung,
                seconds,
            )  # fmt: skip
        )
        for step, kind in (("send-summary", "action"), ("check-size", "decision")):
            rows.append(
                (
                    instance_id,
                    PROCESS,
                    1,
                    step,
                    kind,
                    1,
                    rep,
                    team,
                    closed,
                    None,
                    closed,
                    None,
                    None,
                    None,
                    None,
                    0.0,
                )  # fmt: skip
            )
        end_step = "won" if outcome != "lost" else "lost"
        rows.append(
            (
                instance_id,
                PROCESS,
                1,
                end_step,
                "end",
                1,
                rep,
                team,
                closed,
                None,
                closed,
                end_step,
                None,
                None,
                None,
                0.0,
            )  # fmt: skip
        )
    for n in range(open_tasks):
        instance_id = f"{PROCESS}/O-{n}/r"
        rep, team = people[n % reps]
        opened = end - timedelta(seconds=rng.random() * 5 * 86400)
        instances.append(
            (
                instance_id,
                f"{PROCESS}/O-{n}",
                PROCESS,
                1,
                "0" * 64,
                f"O-{n}",
                "running",
                "{}",
                opened,
            )  # fmt: skip
        )
        tasks.append(
            (
                f"{instance_id}/call-customer/1",
                instance_id,
                PROCESS,
                "call-customer",
                1,
                "Call",
                rep,
                team,
                "open",
                "{}",
                "[]",
                opened,
                opened + timedelta(days=2),
            )  # fmt: skip
        )
    return instances, rows, tasks


def _sqlite_value(value: Any) -> Any:
    # SQLAlchemy's SQLite DATETIME storage format, UTC without an offset (duly's UtcDateTime)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    return value


def load_sqlite(path: Path, data: tuple[list[Any], list[Any], list[Any]]) -> Engine:
    """A SQLite file with duly's tables, filled by executemany in one transaction."""
    engine = make_engine(f"sqlite:///{path}")
    create_all(engine)
    instances, facts, tasks = data
    connection = sqlite3.connect(path)
    with connection:
        for table, columns, rows in (
            ("instances", INSTANCE_COLUMNS, instances),
            ("step_facts", FACT_COLUMNS, facts),
            ("tasks", TASK_COLUMNS, tasks),
        ):
            marks = ", ".join("?" * len(columns.split(",")))
            connection.executemany(
                f"INSERT INTO {table} ({columns}) VALUES ({marks})",
                ([_sqlite_value(v) for v in row] for row in rows),
            )
    connection.execute("ANALYZE")
    connection.close()
    return engine


def load_postgres(schema: str, data: tuple[list[Any], list[Any], list[Any]]) -> Engine:
    """A PostgreSQL schema with duly's tables, filled by COPY."""
    engine = make_engine(POSTGRES_URL, connect_args={"options": f"-csearch_path={schema}"})
    create_all(engine)
    instances, facts, tasks = data
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        for table, columns, rows in (
            ("instances", INSTANCE_COLUMNS, instances),
            ("step_facts", FACT_COLUMNS, facts),
            ("tasks", TASK_COLUMNS, tasks),
        ):
            with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        raw.commit()
        cursor.execute("ANALYZE")
        raw.commit()
    finally:
        raw.close()
    return engine


def best_of(runs: int, work: Callable[[], Any]) -> float:
    """The fastest of `runs` timings of `work()`, in seconds."""
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        work()
        times.append(time.perf_counter() - began)
    return min(times)


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("attainment by rep", "attainment", {"by": "rep"}),
    ("attainment by week", "attainment", {"by": "week"}),
    ("attainment by team", "attainment", {"by": "team"}),
    ("durations p50/p90 by rep", "durations", {"by": "rep"}),
    ("durations p50/p90 by week", "durations", {"by": "week"}),
    ("outcome mix per step", "outcomes", {}),
    ("funnel", "funnel", {}),
    ("backlog by rep", "backlog", {"by": "rep"}),
    ("consistency", "consistency", {}),
]


def measure(
    name: str, engine: Engine, definitions: Definitions, weeks: int, end: datetime, runs: int
) -> list[tuple[str, float, float]]:
    """Time the baseline and every report on one database; print and return the rows."""
    sessions = session_factory(engine)

    def baseline() -> None:
        with engine.connect() as connection:
            connection.execute(text(BASELINE)).all()

    plain = best_of(runs, baseline)
    print(f"\n{name}: plain GROUP BY {plain:.3f} s")
    results = []
    for label, report, options in CASES:
        query = ReportQuery(process=PROCESS, weeks=weeks, **options)

        def work(report: str = report, query: ReportQuery = query) -> None:
            with sessions() as session:
                REPORTS[report](session, query, definitions=definitions, now=end)

        took = best_of(runs, work)
        results.append((label, took, took / plain))
        print(f"  {label:<28} {took:7.3f} s  {took / plain:5.2f}x")
    return results


def roll_up(engine: Engine, zone: str) -> None:
    """Fill the weekly rollups from the bulk-loaded facts (`record_step` keeps them as it
    writes each fact; a bulk load has to rebuild them), and say how long that took."""
    began = time.perf_counter()
    with write_session(session_factory(engine)) as session:
        rows = rebuild(session, {(PROCESS, 1): ZoneInfo(zone)})
    print(f"  rollups rebuilt: {rows:,} weekly rows in {time.perf_counter() - began:.1f} s")


def databases(
    which: str, folder: Path, data: Any
) -> Iterator[tuple[str, Engine, Callable[[], None]]]:
    """(name, engine, cleanup) for each database asked for, each filled with `data`."""
    if which in ("sqlite", "both"):
        began = time.perf_counter()
        engine = load_sqlite(folder / "bench.db", data)
        print(f"sqlite: loaded in {time.perf_counter() - began:.1f} s")
        roll_up(engine, ZONE)
        yield "SQLite", engine, engine.dispose
    if which in ("postgresql", "both"):
        schema = f"bench_reports_{uuid.uuid4().hex[:10]}"
        admin = create_engine(POSTGRES_URL)
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
        began = time.perf_counter()
        engine = load_postgres(schema, data)
        print(f"postgresql: loaded (COPY) in {time.perf_counter() - began:.1f} s")
        roll_up(engine, ZONE)

        def drop() -> None:
            engine.dispose()
            with admin.begin() as connection:
                connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
            admin.dispose()

        yield "PostgreSQL", engine, drop


def main() -> None:
    """Parse the options, fill each database, time the reports."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--facts", type=int, default=1_000_000)
    parser.add_argument("--weeks", type=int, default=12)
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--open", type=int, default=2_000, help="open tasks")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    definitions = load_definitions(ROOT / "definitions")
    zone = definitions.processes[PROCESS].calendar.timezone
    assert zone == ZONE, f"quote-follow-up's calendar is now in {zone}: update ZONE"
    # The end of the period: the end of this week in the calendar's zone, so weeks are whole
    today = datetime.now(ZoneInfo(zone)).date()
    monday = today - timedelta(days=today.weekday())
    end = datetime(monday.year, monday.month, monday.day, tzinfo=ZoneInfo(zone)).astimezone(UTC)
    end += timedelta(weeks=1) - timedelta(seconds=1)
    began = time.perf_counter()
    data = generate(args.facts, args.weeks, args.reps, args.open, end)
    print(
        f"generated {len(data[1]):,} facts, {len(data[0]):,} instances, {len(data[2]):,} open "
        f"tasks over {args.weeks} weeks, {args.reps} reps in {time.perf_counter() - began:.1f} s"
    )
    summary = []
    with tempfile.TemporaryDirectory() as folder:
        for name, engine, cleanup in databases(args.db, Path(folder), data):
            try:
                summary.append(
                    (name, measure(name, engine, definitions, args.weeks, end, args.runs))
                )
            finally:
                cleanup()
    print("\nworst ratio per database (target: each report within 2x the plain GROUP BY):")
    for name, results in summary:
        label, _, ratio = max(results, key=lambda r: r[2])
        verdict = "met" if ratio <= 2 else "NOT met"
        print(f"  {name:<11} {ratio:.2f}x ({label}): {verdict}")


if __name__ == "__main__":
    main()
