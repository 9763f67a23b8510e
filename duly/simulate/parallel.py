"""Runs side by side, one process each, every run with its own test server, worker and store.

One run is sequential by nature: the time-skipping server moves its clock only when nothing is
in flight, so a run's steps happen one after another while the worker's Python and the test
server take turns on about one core. Independent runs (the seeds of a scenario, and the
scenario it is compared with) therefore go to separate processes, as many at once as the
machine has cores; a process also keeps a run's Python work off the caller's event loop (the
web app's, for the What if page). Where one process at a time is all there is (a single run,
or one core), the runs are made in the caller's process instead: starting one costs seconds.
There a run's activations and activities take turns with the caller's other work on its loop,
one callback (a few milliseconds) at a time (`duly.time_skipping.LoopThreadExecutor`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from duly.simulate.fit import Habits
from duly.simulate.measure import RunMeasures
from duly.simulate.scenario import Scenario

Progress = Callable[[int, int], None]
"""Told (runs done, runs in all) each time a run ends."""


@dataclass(frozen=True)
class Run:
    """One run to make: a scenario, the habits and recorded arrivals it rests on, its seed."""

    scenario: Scenario
    habits: Habits
    recorded: list[tuple[datetime, str, dict[str, Any]]]
    seed: int
    start: date


async def run_all(
    runs: list[Run], *, progress: Progress | None = None, processes: int | None = None
) -> list[RunMeasures]:
    """Make every run, side by side in processes; their measures, in the order of `runs`.

    Args:
        runs: The runs; each is independent of the others.
        progress: Told (done, total) as each run ends, in whatever order they end.
        processes: How many at once (default: one per core, at most one per run). With one,
            the runs are made here, one after the other, without starting a process.

    Returns:
        Each run's weekly measures.
    """
    workers = max(1, min(len(runs), processes or os.cpu_count() or 1))
    if workers == 1:
        results: list[RunMeasures] = []
        for run in runs:
            with bytecode_cached():
                results.append(await _make_run_here(run))
            if progress is not None:
                progress(len(results), len(runs))
        return results
    loop = asyncio.get_running_loop()
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),  # never fork a process with threads
        initializer=_start_process,
    )
    try:
        futures = [loop.run_in_executor(pool, _make_run, run) for run in runs]
        for done, finished in enumerate(asyncio.as_completed(futures), start=1):
            await finished
            if progress is not None:
                progress(done, len(runs))
    except BaseException:
        # An error or a cancellation: runs not started are dropped, none is waited for
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    await loop.run_in_executor(None, pool.shutdown)  # the processes exit
    return [future.result() for future in futures]


@contextlib.contextmanager
def bytecode_cached() -> Iterator[None]:
    """Let Python cache compiled modules, in a temporary folder, for as long as a run lasts.

    Every workflow the worker starts imports `workflows/process.py` (the workflow class; its
    interpreter is shared) afresh in its sandbox. With Python's bytecode cache off
    (PYTHONDONTWRITEBYTECODE, common in containers) and no cached file beside the source (an
    editable install), each of those imports compiles the module again.
    """
    if not sys.dont_write_bytecode:
        yield
        return
    before = sys.pycache_prefix
    with tempfile.TemporaryDirectory(prefix="duly-simulate-bytecode-") as cache:
        sys.pycache_prefix, sys.dont_write_bytecode = cache, False
        try:
            yield
        finally:
            sys.pycache_prefix, sys.dont_write_bytecode = before, True


def _start_process() -> None:
    """Set up a process that makes runs: it logs warnings and errors only."""
    from duly.logs import configure
    from duly.settings import Settings

    configure(Settings(), level=logging.WARNING)
    # An action that fails (an email whose template leaves its address empty, say) fails in
    # every instance of a run: a traceback apiece would bury the figures
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)


def _make_run(run: Run) -> RunMeasures:
    """Make one run in a process of the pool."""
    with bytecode_cached():
        return asyncio.run(_make_run_here(run))


async def _make_run_here(run: Run) -> RunMeasures:
    from duly.simulate.runner import run_once

    return await run_once(run.scenario, run.habits, run.recorded, seed=run.seed, start=run.start)
