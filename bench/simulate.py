"""How fast does `duly simulate` run a 4-week scenario of about 800 instances, and two side by side?

The scenario is the shipped lead-follow-up process with 40 leads per business day (800 in four
weeks of 20 open days: the run starts on the first Monday whose four weeks hold no holiday in
the process's calendar), its reps acting with the demo's profiles (no live store: no fitted
habits), on Temporal's time-skipping server with the real worker into a throw-away store,
exactly as `duly simulate` runs it. First the scenario alone (one run: made in this process),
then the same beside its least-loaded variant, as `duly simulate --against` runs them (one
process each). Prints instances simulated per second, the CPU the runs took, the machine's load
around them, its speed before and after (plain workflows a second on a test server), and the
targets (one scenario under 60 s, two side by side under 120 s).

Usage: .venv/bin/python bench/simulate.py [--per-day 40] [--weeks 4] [--runs 1]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from temporalio import workflow  # noqa: E402
from temporalio.runtime import Runtime  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from duly import temporal_binaries  # noqa: E402
from duly.language.loader import Definitions, load_definitions  # noqa: E402
from duly.logs import configure  # noqa: E402
from duly.settings import Settings  # noqa: E402
from duly.simulate.runner import QUIET  # noqa: E402
from duly.simulate.simulation import Outcome, simulate_all  # noqa: E402

SCENARIO = """scenario: {name}
processes: [lead-follow-up]
start: {start}
weeks: {weeks}
arrivals:
  lead-follow-up: {{per_day: {per_day}}}
assignment: {assignment}
"""


def _quiet_start(definitions: Definitions, weeks: int) -> date:
    """The first Monday from next week on whose `weeks` weeks are all open on weekdays."""
    calendar = definitions.processes["lead-follow-up"].calendar
    today = date.today()
    monday = today + timedelta(days=7 - today.weekday())
    while not all(
        calendar.open_ranges(monday + timedelta(days=day))
        for week in range(weeks)
        for day in range(7 * week, 7 * week + 5)
    ):
        monday += timedelta(weeks=1)
    return monday


def _cpu() -> float:
    """CPU seconds of this process and of the processes it waited for (runs, test servers)."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


async def _run(
    folder: Path, names: list[str], args: argparse.Namespace
) -> tuple[list[Outcome], float, float]:
    """Simulate the named scenarios side by side; their outcomes, wall and CPU seconds."""
    definitions = load_definitions(ROOT / "definitions")
    start = _quiet_start(definitions, args.weeks)
    paths = []
    for name in names:
        path = folder / f"{name}.yaml"
        path.write_text(
            SCENARIO.format(
                name=name, start=start, weeks=args.weeks, per_day=args.per_day, assignment=name
            ),
            encoding="utf-8",
        )
        paths.append(path)
    settings = Settings(data_dir=folder, definitions=ROOT / "definitions")
    cpu, began = _cpu(), time.monotonic()
    outcomes = await simulate_all(paths, settings, definitions, runs=args.runs, seed=1)
    return outcomes, time.monotonic() - began, _cpu() - cpu


@workflow.defn(sandboxed=False)
class _Plain:
    @workflow.run
    async def run(self) -> None:
        await workflow.sleep(timedelta(hours=1))


async def _machine_speed(count: int = 200) -> str:
    """The machine's speed at this workload: plain one-timer workflows, one after another,
    on a fresh time-skipping server. It varied twofold within an hour here, so each run's
    figures are read beside it."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(temporal_binaries.test_server_path()),
        runtime=Runtime(telemetry=QUIET),
    )
    try:
        async with Worker(env.client, task_queue="speed", workflows=[_Plain]):
            began = time.monotonic()
            for number in range(count):
                await env.client.execute_workflow(
                    _Plain.run, id=f"speed-{number}", task_queue="speed"
                )
            seconds = time.monotonic() - began
    finally:
        await env.shutdown()
    return f"machine: {count / seconds:.0f} plain workflows/s one after another on a test server"


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


async def main() -> None:
    """Run the scenario alone, then beside its variant, and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-day", type=float, default=40.0)
    parser.add_argument("--weeks", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    configure(Settings(), level=logging.WARNING)  # as the CLI's commands that print figures
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)  # as `duly simulate`
    print(f"scenario: lead-follow-up, {args.per_day:g}/business day, {args.weeks} weeks, "
          f"{args.runs} run(s) each; {os.cpu_count()} CPUs")  # fmt: skip
    print(await _machine_speed())
    with tempfile.TemporaryDirectory(prefix="duly-bench-simulate-") as folder:
        load = _load()
        (alone,), alone_s, alone_cpu = await _run(Path(folder), ["as-defined"], args)
        print(
            f"alone          {alone.instances:>5} instances in {alone_s:6.1f} s: "
            f"{alone.instances / alone_s:5.1f} instances/s, CPU {alone_cpu:6.1f} s "
            f"(load {load} before, {_load()} after)"
        )
        load = _load()
        both, both_s, both_cpu = await _run(Path(folder), ["as-defined", "least-loaded"], args)
        instances = sum(outcome.instances for outcome in both)
        print(
            f"side by side   {instances:>5} instances in {both_s:6.1f} s: "
            f"{instances / both_s:5.1f} instances/s, CPU {both_cpu:6.1f} s "
            f"(load {load} before, {_load()} after)"
        )
    print(await _machine_speed())
    print(f"target one scenario under 60 s: {'met' if alone_s < 60 else 'missed'}")
    print(f"target two side by side under 120 s: {'met' if both_s < 120 else 'missed'}")


if __name__ == "__main__":
    asyncio.run(main())
