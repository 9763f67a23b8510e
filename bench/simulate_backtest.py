"""Back-test `duly simulate`: fit on weeks 1-4 of a recorded history, simulate weeks 5-6.

Two histories, each six weeks written by the real engine with `duly demo`'s driver:

- `demo`: `duly demo --weeks 6 --seed 1`, the reps with the demo's profiles (one reliable, one
  often late, one with bad weeks, one improving from slow to quick);
- `other`: seed 7, twice the work, and habits the fit was never developed on: other profiles
  (steady, quick but erratic, slow, a rep with a few bad weeks; a slower manager) and another
  outcome mix (fewer calls reach the lead or the customer, more cases need information).

For each, the habits are fitted on weeks 1-4 and weeks 5-6 simulated with their recorded arrivals,
then compared with what was recorded (`duly.simulate.backtest`: how, and the `2se` and `noise`
columns). tests/simulate/test_backtest.py asserts the demo's history loosely.

Usage: .venv/bin/python bench/simulate_backtest.py [--history demo|other|both] [--runs 3]
       [--data-dir DIR (keeps the histories, and reuses them next time)] [--seed 1]
       [--ends 2026-12-04T20:27+00:00 (the histories end then, not now)]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from duly import demo  # noqa: E402
from duly.language.loader import load_definitions  # noqa: E402
from duly.logs import configure  # noqa: E402
from duly.settings import Settings  # noqa: E402
from duly.simulate.backtest import ATTAINMENT_POINTS, BACKLOG_SHARE, backtest  # noqa: E402

HISTORIES: dict[str, dict[str, Any]] = {
    "demo": {"seed": 1, "scale": 1.0},
    "other": {
        "seed": 7,
        "scale": 2.0,
        "profiles": (
            demo.Profile("steady", median=0.55, sigma=0.3),
            demo.Profile("quick, erratic", median=0.3, sigma=0.9, reach=0.9),
            demo.Profile("slow", median=1.05, sigma=0.35, reach=1.1),
            demo.Profile("a few bad weeks", median=0.45, bad_week_median=1.2, bad_weeks=0.25),
        ),
        "manager": demo.Profile("slower manager", median=0.7, sigma=0.4),
        "outcomes": {
            **demo.OUTCOMES,
            ("quote-follow-up", "call-customer"): {"+reached": 45, "voicemail": 42, "lost": 13},
            ("lead-follow-up", "first-call"): {"+reached": 45, "no-answer": 48, "wrong-number": 7},
            ("lead-follow-up", "qualify"): {
                "suspect": 30,
                "+prospect": 30,
                "+qualified": 20,
                "disqualify": 20,
            },
            ("support-case", "investigate"): {"need-info": 40, "+fixed": 48, "escalate": 12},
        },
    },
}
"""How each history is written: the demo's seed and scale, and the habits it overrides."""


async def write_history(name: str, data_dir: Path, ends: datetime | None) -> None:
    """Write six weeks of a history, ending at `ends`, into `data_dir` (`duly demo`)."""
    spec = HISTORIES[name]
    settings = Settings(data_dir=data_dir, definitions=ROOT / "definitions")
    definitions = load_definitions(ROOT / "definitions")
    with (
        mock.patch.object(demo, "PROFILES", spec.get("profiles", demo.PROFILES)),
        mock.patch.object(demo, "MANAGER", spec.get("manager", demo.MANAGER)),
        mock.patch.object(demo, "OUTCOMES", spec.get("outcomes", demo.OUTCOMES)),
    ):
        await demo.run_demo(
            settings, definitions, weeks=6, seed=spec["seed"], scale=spec["scale"], ends=ends
        )


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _print(name: str, result: dict[str, Any], runs: int) -> None:
    print(f"\nhistory {name}: fit on weeks 1-4, simulated weeks 5-6: {result['instances']} "
          f"instances in {result['seconds']:.1f} s, {runs} runs")  # fmt: skip
    print(f"{'process':<16} {'wk':>2} {'n':>4} {'recorded':>9} {'simulated':>9} {'band':>13} "
          f"{'diff':>8} {'2se':>6} {'':5}  {'backlog rec':>11} {'sim':>6}")  # fmt: skip
    for row in result["rows"]:
        low, high = row["band"]
        band = "-" if low is None else f"{low * 100:.0f}-{high * 100:.0f}%"
        diff = "-" if row["points"] is None else f"{row['points']:+.1f}pt"
        print(
            f"{row['process']:<16} {row['week']:>2} {row['tasks']:>4} "
            f"{_pct(row['recorded_attainment']):>9} {_pct(row['simulated_attainment']):>9} "
            f"{band:>13} {diff:>8} {row['spread']:>5.1f}  {row['verdict']:5}  "
            f"{row['recorded_backlog']:>11.1f} {row['simulated_backlog']:>6.1f}"
            f"{'' if row['backlog_ok'] else '!'}"
        )
    rows = result["rows"]
    held = sum(r["attainment_ok"] for r in rows)
    chance = sum(r["verdict"] == "noise" for r in rows)
    backlog = sum(r["backlog_ok"] for r in rows)
    print(f"attainment within {ATTAINMENT_POINTS:g} points: {held}/{len(rows)} weeks; "
          f"within chance where 5 points is below it: {chance} more")  # fmt: skip
    print(f"backlog within {BACKLOG_SHARE:.0%} (or 2 tasks): {backlog}/{len(rows)} weeks")
    print("per rep, weeks 5-6, every process: tasks, recorded, simulated")
    for rep in result["reps"]:
        print(f"  {rep['rep']:<8} {rep['tasks']:>4} {_pct(rep['recorded']):>7} "
              f"{_pct(rep['simulated']):>7}")  # fmt: skip


async def main() -> None:
    """Write or reuse each history, back-test it, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--history", choices=[*HISTORIES, "both"], default="both")
    parser.add_argument(
        "--data-dir", type=Path, help="keep each history in DIR/<history>, reuse it if there"
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--warm-up", type=int, default=1, help="weeks simulated before week 5")
    parser.add_argument(
        "--ends",
        type=datetime.fromisoformat,
        help="when the histories end, e.g. 2026-12-04T20:27+00:00 (default: now)",
    )
    args = parser.parse_args()
    configure(Settings(), level=logging.WARNING)  # as the CLI's commands that print figures
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)  # as `duly simulate`
    names = list(HISTORIES) if args.history == "both" else [args.history]
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"duly-backtest-{name}-") as folder:
            data_dir = args.data_dir / name if args.data_dir else Path(folder)
            if not (data_dir / "duly.db").is_file():
                await write_history(name, data_dir, args.ends)
            result = await backtest(
                data_dir, ROOT / "definitions", runs=args.runs, seed=args.seed, warm_up=args.warm_up
            )
            _print(name, result, args.runs)


if __name__ == "__main__":
    asyncio.run(main())
