"""Simulate scenario files: load them, fit the habits, run them side by side, summarize."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from duly.language.loader import Definitions
from duly.settings import Settings
from duly.simulate.fit import Habits, fit_habits
from duly.simulate.measure import summarize
from duly.simulate.parallel import Progress, Run, run_all
from duly.simulate.runner import first_day, recorded_arrivals
from duly.simulate.scenario import Scenario, load_scenario


@dataclass
class Outcome:
    """A simulated scenario: its summary, the habits behind it, what it took."""

    name: str
    summary: dict[str, Any]
    fit_rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    instances: int = 0

    @property
    def per_second(self) -> float:
        """Instances simulated per second of wall time."""
        return self.instances / self.seconds if self.seconds else 0.0


def _live_fit(settings: Settings, scenario: Scenario) -> tuple[Habits, Engine | None]:
    """Habits fitted on the live store, and its engine; none when there is no store yet."""
    from sqlalchemy import inspect, make_url

    from duly.store.db import make_engine

    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and not Path(url.database or "").is_file():
        return Habits(), None  # no live store: opening it would create one
    engine = make_engine(settings.database_url)
    if not inspect(engine).has_table("step_facts"):
        engine.dispose()
        return Habits(), None
    period = scenario.spec.behaviour.fit
    since: date | None = period.from_ if period else None
    until: date | None = period.to if period else None
    calendars = {name: p.calendar for name, p in scenario.definitions.processes.items()}
    return fit_habits(engine, since=since, until=until, calendars=calendars), engine


def _given_rows(scenario: Scenario) -> list[dict[str, Any]]:
    """The habits the scenario gives (not fitted), shown beside the fitted ones."""
    from duly.simulate.runner import given_habit

    given = dict(scenario.spec.behaviour.reps)
    given |= {rep: a.habit for rep, a in scenario.spec.team.add.items() if a.habit is not None}
    rows: list[dict[str, Any]] = []
    for rep, spec in sorted(given.items()):
        habit = given_habit(spec)
        rows.append(
            {
                "rep": rep,
                "process": "*",
                "step": "*",
                "facts": 0,
                "warning": "given in the scenario, not fitted",
                "fitted_p50_h": round(habit.fitted_p50() / 3600, 2),
                "fitted_p90_h": round(habit.fitted_p90() / 3600, 2),
            }
        )
    return rows


@dataclass
class _Prepared:
    """A scenario checked, its habits fitted and its recorded arrivals read, ready to run."""

    scenario: Scenario
    habits: Habits
    recorded: list[tuple[datetime, str, dict[str, Any]]]
    start: date
    fit_rows: list[dict[str, Any]]


def _prepare(
    path: Path, settings: Settings, definitions: Definitions, weeks: int | None
) -> _Prepared:
    """Load a scenario and read what it needs from the live store (only read, then closed)."""
    scenario = load_scenario(path, definitions, Path(settings.definitions))
    if weeks is not None:
        scenario.spec = scenario.spec.model_copy(update={"weeks": weeks})
    start = first_day(scenario)
    habits, live = _live_fit(settings, scenario)
    try:
        recorded = recorded_arrivals(live, scenario, start) if live is not None else []
    finally:
        if live is not None:
            live.dispose()
    reps = set(scenario.definitions.org.users)
    fit_rows = [
        row
        for row in habits.rows()
        if row["rep"] in reps and row["process"] in scenario.definitions.processes
    ]
    fit_rows += _given_rows(scenario)
    return _Prepared(scenario, habits, recorded, start, fit_rows)


async def simulate_all(
    paths: list[Path],
    settings: Settings,
    definitions: Definitions,
    *,
    runs: int = 3,
    seed: int = 1,
    weeks: int | None = None,
    progress: Progress | None = None,
) -> list[Outcome]:
    """Load, fit and run scenario files side by side; the live store is only read.

    Every run of every scenario is independent (its own test server, worker and store), so
    they run in parallel processes (`duly.simulate.parallel`). Each scenario's runs use the
    seeds `seed`, `seed + 1`, ...: the same seeds for every scenario, so a comparison differs
    by the scenarios only.

    Args:
        paths: The scenario files (`--against` adds the second).
        settings: duly's settings: the live database whose facts the habits are fitted on.
        definitions: The live definitions.
        runs: How many runs of each scenario.
        seed: The first run's seed.
        weeks: Overrides every scenario's `weeks`.
        progress: Told (runs done, runs in all) after each run.

    Returns:
        One outcome per file, in order; each one's `seconds` is the wall time of them all.

    Raises:
        DefinitionError: A scenario (or a draft it names) is invalid; nothing has run.
    """
    prepared = [_prepare(path, settings, definitions, weeks) for path in paths]
    jobs = [
        Run(p.scenario, p.habits, p.recorded, seed + index, p.start)
        for p in prepared
        for index in range(runs)
    ]
    began = time.monotonic()
    measures = await run_all(jobs, progress=progress)
    seconds = time.monotonic() - began
    outcomes: list[Outcome] = []
    for number, p in enumerate(prepared):
        results = measures[number * runs : (number + 1) * runs]
        outcomes.append(
            Outcome(
                name=p.scenario.spec.scenario,
                summary=summarize(results),
                fit_rows=p.fit_rows,
                seconds=seconds,
                instances=sum(r.instances for r in results),
            )
        )
    return outcomes


async def simulate(
    path: Path,
    settings: Settings,
    definitions: Definitions,
    *,
    runs: int = 3,
    seed: int = 1,
    weeks: int | None = None,
    progress: Progress | None = None,
) -> Outcome:
    """Load, fit and run one scenario file; the live store is only read (habits, arrivals).

    Args:
        path: The scenario file.
        settings: duly's settings: the live database whose facts the habits are fitted on.
        definitions: The live definitions.
        runs: How many runs, seeds `seed`, `seed + 1`, ... (in parallel processes).
        seed: The first run's seed.
        weeks: Overrides the scenario's `weeks`.
        progress: Called with (runs done, runs) after each run.

    Returns:
        The summary across runs and the fit it rests on.

    Raises:
        DefinitionError: The scenario (or a draft it names) is invalid.
    """
    (outcome,) = await simulate_all(
        [path], settings, definitions, runs=runs, seed=seed, weeks=weeks, progress=progress
    )
    return outcome
