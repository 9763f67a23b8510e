"""Back-test `duly simulate`: fit on weeks 1-4 of a recorded history, simulate weeks 5-6.

The history is `duly demo`'s (6 weeks, written by the real engine; `--data-dir` reuses one that
exists, else a fresh one is written in a temporary folder). The scenario runs the shipped
processes with the arrivals recorded in weeks 5-6 (same weekday and time of day) and the habits
fitted on weeks 1-4 only; its weekly attainment and backlog (tasks open at the week's end) are
measured exactly as the recorded weeks 5-6 are (`duly.simulate.measure.measure_run` on each
store), then compared: attainment within 5 points, backlog within 15% (or 2 tasks when small).

Usage: .venv/bin/python bench/simulate_backtest.py [--data-dir DIR] [--runs 2] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlmodel import Session, func, select  # noqa: E402

from duly.demo import SHIPPED, run_demo  # noqa: E402
from duly.language.loader import Definitions, load_definitions  # noqa: E402
from duly.logs import configure  # noqa: E402
from duly.settings import Settings  # noqa: E402
from duly.simulate.measure import measure_run, summarize  # noqa: E402
from duly.simulate.simulation import simulate  # noqa: E402
from duly.store.db import make_engine  # noqa: E402
from duly.store.models import Instance  # noqa: E402

ATTAINMENT_POINTS = 5.0
BACKLOG_SHARE = 0.15


async def backtest(data_dir: Path, runs: int, seed: int) -> dict[str, Any]:
    """Fit, simulate and compare; the rows of the comparison and whether each holds."""
    definitions = load_definitions(ROOT / "definitions")
    settings = Settings(data_dir=data_dir, definitions=ROOT / "definitions")
    engine = make_engine(settings.database_url)
    with Session(engine) as session:
        first = session.exec(select(func.min(Instance.started_at))).one()
    if first is None:
        raise SystemExit(f"no recorded history in {data_dir}")
    zone = ZoneInfo(definitions.processes["lead-follow-up"].calendar.timezone)
    local = first.astimezone(zone).date()
    monday = local - timedelta(days=local.weekday())
    week5 = monday + timedelta(weeks=4)
    names = [name for name in SHIPPED if name in definitions.processes]
    scenario = data_dir / "backtest.yaml"
    arrivals = "\n".join(
        f"  {name}: {{as_recorded: {{from: {week5}, to: {week5 + timedelta(days=13)}}}}}"
        for name in names
    )
    scenario.write_text(
        f"scenario: backtest\nprocesses: [{', '.join(names)}]\nweeks: 2\narrivals:\n{arrivals}\n"
        f"behaviour:\n  fit: {{from: {monday}, to: {week5 - timedelta(days=1)}}}\n",
        encoding="utf-8",
    )
    outcome = await simulate(scenario, settings, definitions, runs=runs, seed=seed)
    begin = datetime.combine(week5, time(), zone).astimezone(UTC)
    chosen = {name: definitions.processes[name] for name in names}
    recorded = summarize([measure_run(engine, Definitions(processes=chosen), begin, 2, seed=0)])
    engine.dispose()
    simulated = {(w["process"], w["week"]): w for w in outcome.summary["weeks"]}
    rows = []
    for week in recorded["weeks"]:
        sim = simulated[(week["process"], week["week"])]
        rec_att, sim_att = week["attainment"]["mean"], sim["attainment"]["mean"]
        rec_back, sim_back = week["backlog"]["mean"] or 0.0, sim["backlog"]["mean"] or 0.0
        points = None if rec_att is None or sim_att is None else (sim_att - rec_att) * 100
        allowed = max(BACKLOG_SHARE * rec_back, 2.0)
        rows.append(
            {
                "process": week["process"],
                "week": week["week"] + 4,
                "recorded_attainment": rec_att,
                "simulated_attainment": sim_att,
                "band": (sim["attainment"]["low"], sim["attainment"]["high"]),
                "points": points,
                "attainment_ok": points is not None and abs(points) <= ATTAINMENT_POINTS,
                "recorded_backlog": rec_back,
                "simulated_backlog": sim_back,
                "backlog_ok": abs(sim_back - rec_back) <= allowed,
            }
        )
    return {"rows": rows, "seconds": outcome.seconds, "instances": outcome.instances}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


async def main() -> None:
    """Write or reuse the history, back-test, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    configure(Settings(), level=logging.WARNING)  # as the CLI's commands that print figures
    with tempfile.TemporaryDirectory(prefix="duly-backtest-") as folder:
        data_dir = args.data_dir or Path(folder)
        if args.data_dir is None:
            settings = Settings(data_dir=data_dir, definitions=ROOT / "definitions")
            await run_demo(settings, load_definitions(ROOT / "definitions"), weeks=6, seed=1)
        result = await backtest(data_dir, args.runs, args.seed)
    print(f"fit on weeks 1-4, simulated weeks 5-6: {result['instances']} instances in "
          f"{result['seconds']:.1f} s, {args.runs} runs")  # fmt: skip
    print(f"{'process':<16} {'wk':>2} {'recorded':>9} {'simulated':>9} {'diff':>7}  "
          f"{'backlog rec':>11} {'sim':>6}")  # fmt: skip
    for row in result["rows"]:
        diff = "-" if row["points"] is None else f"{row['points']:+.1f}pt"
        print(
            f"{row['process']:<16} {row['week']:>2} {_pct(row['recorded_attainment']):>9} "
            f"{_pct(row['simulated_attainment']):>9} {diff:>7}"
            f"{'' if row['attainment_ok'] else '!'}  {row['recorded_backlog']:>11.1f} "
            f"{row['simulated_backlog']:>6.1f}{'' if row['backlog_ok'] else '!'}"
        )
    held = sum(r["attainment_ok"] for r in result["rows"])
    backlog = sum(r["backlog_ok"] for r in result["rows"])
    total = len(result["rows"])
    print(f"attainment within {ATTAINMENT_POINTS:g} points: {held}/{total} weeks")
    print(f"backlog within {BACKLOG_SHARE:.0%} (or 2 tasks): {backlog}/{total} weeks")


if __name__ == "__main__":
    asyncio.run(main())
