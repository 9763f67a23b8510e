"""What one run of a scenario measured, per week, and the band across runs.

Read from the run's own throw-away store: a week's attainment is the share of its task visits
(opened that week, with an SLA) that met it; breaches count by the highest rung their ladder
reached; backlog is the tasks open at the week's end; per rep, the task visits they held and the
share they met.
"""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Engine
from sqlalchemy import select as sa_select
from sqlmodel import Session, select

from duly.language.loader import Definitions
from duly.store.models import StepFact, Task


@dataclass
class WeekMeasure:
    """One process's week in one run."""

    process: str
    week: int
    facts: int = 0
    met: int = 0
    breaches: Counter[int] = field(default_factory=Counter)
    backlog: int = 0

    @property
    def attainment(self) -> float | None:
        """Share of the week's SLA'd task visits that met it, None without any."""
        return self.met / self.facts if self.facts else None


@dataclass
class RunMeasures:
    """Everything one run measured."""

    seed: int
    instances: int
    weeks: list[WeekMeasure]
    reps: dict[str, tuple[int, int]]  # rep -> (task visits with an SLA, met)
    goals: dict[str, float]


def measure_run(
    engine: Engine, definitions: Definitions, begin: datetime, weeks: int, *, seed: int
) -> RunMeasures:
    """Measure a finished run's store, week by week from `begin`."""
    out: list[WeekMeasure] = []
    reps: dict[str, list[int]] = {}
    with Session(engine) as session:
        c = StepFact.__table__.c  # type: ignore[attr-defined]
        facts = (
            session.connection()
            .execute(
                sa_select(c.process, c.opened_at, c.sla_met, c.highest_rung, c.assignee).where(
                    c.kind == "task", c.sla_met.is_not(None)
                )
            )
            .all()
        )
        tasks = session.exec(select(Task.process, Task.opened_at, Task.closed_at)).all()
        instances = len(session.exec(select(StepFact.instance_id).distinct()).all())
    table = {
        (name, week): WeekMeasure(name, week)
        for name in definitions.processes
        for week in range(weeks)
    }
    for process, opened, met, rung, assignee in facts:
        week = (opened - begin) // timedelta(weeks=1)
        row = table.get((process, week))
        if row is None:
            continue
        row.facts += 1
        row.met += 1 if met else 0
        if not met:
            row.breaches[rung or 0] += 1
        counts = reps.setdefault(assignee or "(none)", [0, 0])
        counts[0] += 1
        counts[1] += 1 if met else 0
    for process, opened, closed in tasks:
        for week in range(weeks):
            end = begin + timedelta(weeks=week + 1)
            if opened < end and (closed is None or closed >= end) and (process, week) in table:
                table[(process, week)].backlog += 1
    out = [table[key] for key in sorted(table, key=lambda k: (k[0], k[1]))]
    goals = {
        name: p.spec.goal.attainment
        for name, p in definitions.processes.items()
        if p.spec.goal is not None
    }
    return RunMeasures(seed, instances, out, {r: (c[0], c[1]) for r, c in reps.items()}, goals)


@dataclass
class Band:
    """A figure across runs: its mean and its min/max."""

    mean: float | None
    low: float | None
    high: float | None

    @classmethod
    def of(cls, values: list[float | None]) -> Band:
        """The band of the values that exist."""
        present = [v for v in values if v is not None]
        if not present:
            return cls(None, None, None)
        return cls(statistics.fmean(present), min(present), max(present))


def summarize(runs: list[RunMeasures]) -> dict[str, Any]:
    """Per process and week: attainment vs goal (band), breaches by rung, backlog; per rep."""
    weeks: list[dict[str, Any]] = []
    keys = sorted({(w.process, w.week) for run in runs for w in run.weeks})
    for process, week in keys:
        rows = [w for run in runs for w in run.weeks if (w.process, w.week) == (process, week)]
        attainment = Band.of([w.attainment for w in rows])
        rungs = sorted({r for w in rows for r in w.breaches})
        weeks.append(
            {
                "process": process,
                "week": week + 1,
                "goal": runs[0].goals.get(process),
                "attainment": asdict(attainment),
                "breaches_by_rung": {
                    str(r): statistics.fmean(w.breaches.get(r, 0) for w in rows) for r in rungs
                },
                "backlog": asdict(Band.of([float(w.backlog) for w in rows])),
                "tasks": statistics.fmean(w.facts for w in rows),
            }
        )
    reps: dict[str, Any] = {}
    for rep in sorted({r for run in runs for r in run.reps}):
        loads = [run.reps.get(rep, (0, 0)) for run in runs]
        reps[rep] = {
            "tasks": statistics.fmean(n for n, _ in loads),
            "attainment": asdict(Band.of([met / n if n else None for n, met in loads])),
        }
    return {
        "runs": len(runs),
        "instances": statistics.fmean(run.instances for run in runs) if runs else 0,
        "weeks": weeks,
        "reps": reps,
    }
