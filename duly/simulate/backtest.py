"""Back-test `duly simulate` on a recorded history: fit on weeks 1-4, simulate weeks 5-6.

The scenario runs the shipped processes with the arrivals recorded in weeks 5-6 (same weekday,
time of day and owner) and the habits fitted on weeks 1-4 only; its weekly attainment and
backlog (tasks open at the week's end) are measured exactly as the recorded weeks 5-6 are
(`measure_run` on each store), then compared: attainment within 5 points, backlog within 15%
(or 2 tasks when small).

A week's attainment is a share of the tasks measured that week, so it varies from one week to
the next by chance alone: by sqrt(p(1-p)/n) for n tasks (12 points for 11 tasks at 80%). Each
row carries n and that spread for the difference (two standard errors of recorded minus
simulated mean); where it is wider than 5 points the 5-point check says more about chance than
about the simulation, and the row is judged by it instead (verdict `noise`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlmodel import Session, func, select

from duly import demo
from duly.language.loader import Definitions, load_definitions
from duly.settings import Settings
from duly.simulate.measure import measure_run, summarize
from duly.simulate.simulation import simulate
from duly.store.db import make_engine
from duly.store.models import Instance

ATTAINMENT_POINTS = 5.0
BACKLOG_SHARE = 0.15


async def backtest(
    data_dir: Path, definitions_dir: Path, *, runs: int, seed: int, warm_up: int = 1
) -> dict[str, Any]:
    """Fit, simulate and compare; the rows of the comparison and whether each holds.

    The simulation starts `warm_up` weeks before week 5 with the arrivals recorded then (the
    scenario's `warm_up`), and those weeks are not compared: a run starts with no work open,
    while the recorded week 5 began with week 4's leads still being called back, qualified
    and waiting on a demo.

    Args:
        data_dir: The folder of the recorded store (`duly.db`), six weeks written by the engine.
        definitions_dir: The definitions the history was recorded with.
        runs: Simulation runs, in parallel processes.
        seed: The first run's seed.
        warm_up: Weeks simulated before week 5, not compared.

    Returns:
        `rows` (one per process and week), `reps` (weeks 5-6 per rep), `seconds`, `instances`.

    Raises:
        ValueError: The store holds no instance.
    """
    definitions = load_definitions(definitions_dir)
    settings = Settings(data_dir=data_dir, definitions=definitions_dir)
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        first = session.exec(select(func.min(Instance.started_at))).one()
    if first is None:
        raise ValueError(f"no recorded history in {data_dir}")
    zone = ZoneInfo(definitions.processes["lead-follow-up"].calendar.timezone)
    local = first.astimezone(zone).date()
    monday = local - timedelta(days=local.weekday())
    week5 = monday + timedelta(weeks=4)
    replayed_from = week5 - timedelta(weeks=warm_up)
    names = [name for name in demo.SHIPPED if name in definitions.processes]
    start, replay = replayed_on_calendars(definitions, names, replayed_from, warm_up=warm_up)
    scenario = data_dir / "backtest.yaml"
    arrivals = "\n".join(
        f"  {name}: {{as_recorded: {{from: {replayed_from}, to: {week5 + timedelta(days=13)}}}}}"
        for name in names
    )
    scenario.write_text(
        f"scenario: backtest\nprocesses: [{', '.join(names)}]\nstart: {start}\nweeks: 2\n"
        f"warm_up: {warm_up}\n"
        f"arrivals:\n{arrivals}\n"
        f"behaviour:\n  fit: {{from: {monday}, to: {week5 - timedelta(days=1)}}}\n",
        encoding="utf-8",
    )
    outcome = await simulate(scenario, settings, replay, runs=runs, seed=seed)
    begin = datetime.combine(week5, time(), zone).astimezone(UTC)
    chosen = {name: definitions.processes[name] for name in names}
    recorded = summarize([measure_run(engine, Definitions(processes=chosen), begin, 2, seed=0)])
    engine.dispose()
    simulated = {(w["process"], w["week"]): w for w in outcome.summary["weeks"]}
    rows = [_compare(week, simulated[(week["process"], week["week"])], runs) for week in
            recorded["weeks"]]  # fmt: skip
    reps = [
        {
            "rep": rep,
            "tasks": int(rec["tasks"]),
            "recorded": rec["attainment"]["mean"],
            "simulated": outcome.summary["reps"].get(rep, {}).get("attainment", {}).get("mean"),
        }
        for rep, rec in recorded["reps"].items()
    ]
    return {
        "rows": rows,
        "reps": reps,
        "seconds": outcome.seconds,
        "instances": outcome.instances,
    }


def replayed_on_calendars(
    definitions: Definitions,
    names: Sequence[str],
    recorded: date,
    *,
    warm_up: int,
    today: date | None = None,
) -> tuple[date, Definitions]:
    """Where the replay starts, and the processes with calendars open there as recorded.

    A simulation runs on days to come (Temporal's test server starts at today), and replays
    the recorded arrivals there weekday for weekday. Where a holiday fell in the recorded
    weeks and not in the replayed ones, the two would differ by it alone: a Christmas in the
    simulated weeks leaves its tasks open two days longer. So each process replays on its
    calendar with the replayed days open exactly as the recorded days were.

    Args:
        definitions: The live definitions.
        names: The processes replayed.
        recorded: The Monday the replayed period begins (the warm-up's first day).
        warm_up: Weeks of warm-up before the first measured day; two weeks are measured.
        today: The present (default: the clock's).

    Returns:
        The first measured day (`start:`, a Monday after today plus the warm-up), and the
        definitions with the replayed processes' calendars set for the replay.
    """
    today = today or datetime.now(UTC).date()
    monday = today + timedelta(days=7 - today.weekday())  # the warm-up's first day
    days = 7 * (warm_up + 2)
    replayed = {
        name: definitions.processes[name].standing_in(days_of=recorded, on=monday, days=days)
        for name in names
    }
    processes = {**definitions.processes, **replayed}
    return monday + timedelta(weeks=warm_up), dataclasses.replace(definitions, processes=processes)


def _compare(week: dict[str, Any], sim: dict[str, Any], runs: int) -> dict[str, Any]:
    """One process's week: recorded against simulated, with the spread chance alone gives."""
    rec_att, sim_att = week["attainment"]["mean"], sim["attainment"]["mean"]
    rec_back, sim_back = week["backlog"]["mean"] or 0.0, sim["backlog"]["mean"] or 0.0
    n = int(week["tasks"])
    points = None if rec_att is None or sim_att is None else (sim_att - rec_att) * 100
    # Two standard errors of (simulated mean - recorded): the recorded week is one draw of n
    # tasks, the simulated mean one of `runs` draws of about as many
    share = rec_att if rec_att is not None else 0.5
    spread = 2 * 100 * math.sqrt(share * (1 - share) / max(n, 1) * (1 + 1 / runs))
    spread = max(spread, 100 / max(n, 1))  # at 0% or 100%, at least one task's worth
    within = points is not None and abs(points) <= ATTAINMENT_POINTS
    if within:
        verdict = "ok"
    elif points is not None and spread > ATTAINMENT_POINTS and abs(points) <= spread:
        verdict = "noise"  # too few tasks for 5 points to mean anything; within chance
    else:
        verdict = "MISS"
    return {
        "process": week["process"],
        "week": week["week"] + 4,
        "tasks": n,
        "recorded_attainment": rec_att,
        "simulated_attainment": sim_att,
        "band": (sim["attainment"]["low"], sim["attainment"]["high"]),
        "points": points,
        "spread": spread,
        "attainment_ok": within,
        "verdict": verdict,
        "recorded_backlog": rec_back,
        "simulated_backlog": sim_back,
        "backlog_ok": abs(sim_back - rec_back) <= max(BACKLOG_SHARE * rec_back, 2.0),
    }
