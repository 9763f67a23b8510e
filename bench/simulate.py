"""How fast does `duly simulate` run a 4-week scenario of about 800 instances, and two side by side?

The scenario is the shipped lead-follow-up process with 40 leads per business day (about 800 in
four weeks of 20 business days), its reps acting with the demo's profiles (no live store: no
fitted habits), on Temporal's time-skipping server with the real worker into a throw-away store,
exactly as `duly simulate` runs it. The second scenario is the same with least-loaded assignment,
run after the first as `--against` does. Prints instances simulated per second and the targets
(one scenario under 60 s, two under 120 s).

Usage: .venv/bin/python bench/simulate.py [--per-day 40] [--weeks 4] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from duly.language.loader import load_definitions  # noqa: E402
from duly.logs import configure  # noqa: E402
from duly.settings import Settings  # noqa: E402
from duly.simulate.simulation import Outcome, simulate  # noqa: E402

SCENARIO = """scenario: {name}
processes: [lead-follow-up]
weeks: {weeks}
arrivals:
  lead-follow-up: {{per_day: {per_day}}}
assignment: {assignment}
"""


async def _one(folder: Path, name: str, assignment: str, args: argparse.Namespace) -> Outcome:
    path = folder / f"{name}.yaml"
    path.write_text(
        SCENARIO.format(name=name, weeks=args.weeks, per_day=args.per_day, assignment=assignment),
        encoding="utf-8",
    )
    definitions = load_definitions(ROOT / "definitions")
    settings = Settings(data_dir=folder, definitions=ROOT / "definitions")
    return await simulate(path, settings, definitions, runs=args.runs, seed=1)


async def main() -> None:
    """Run both scenarios and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=float, default=40.0)
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    configure(Settings(), level=logging.WARNING)  # as the CLI's commands that print figures
    with tempfile.TemporaryDirectory(prefix="duly-bench-simulate-") as folder:
        first = await _one(Path(folder), "as-defined", "as-defined", args)
        second = await _one(Path(folder), "least-loaded", "least-loaded", args)
    both = first.seconds + second.seconds
    print(f"scenario: lead-follow-up, {args.per_day:g}/business day, {args.weeks} weeks")
    for outcome in (first, second):
        print(
            f"{outcome.name:<14} {outcome.instances:>5} instances in {outcome.seconds:6.1f} s: "
            f"{outcome.per_second:5.1f} instances/s"
        )
    print(f"side by side   {first.instances + second.instances:>5} instances in {both:6.1f} s")
    print(f"target one scenario under 60 s: {'met' if first.seconds < 60 else 'missed'}")
    print(f"target two side by side under 120 s: {'met' if both < 120 else 'missed'}")


if __name__ == "__main__":
    asyncio.run(main())
