"""Reps' habits fitted from the recorded facts, and shown next to what was recorded.

A habit is, per rep and task step: the business time from the task opening to the rep's action
(log-normal, fitted on the logs of the recorded business seconds), and the outcome mix. A habit
resting on fewer than `ENOUGH` facts is flagged; below `FEWEST`, the simulation uses the step's
habit pooled over every rep instead, so one rep's three lucky calls do not become a law.
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Engine, select
from sqlmodel import Session

from duly.store.models import StepFact

ENOUGH = 20
"""Fewer facts than this and a rep's own habit is flagged as resting on too few."""
FEWEST = 5
"""Fewer facts than this and the step's habit pooled over every rep is used instead."""
Z90 = 1.2815515655446004
"""The standard normal's 90th percentile: p90 of a log-normal is exp(mu + Z90 * sigma)."""
MIN_SECONDS = 60.0


@dataclass
class Habit:
    """How one rep (or every rep, pooled) acts on one task step.

    Attributes:
        mu: Mean of the log of business seconds to act.
        sigma: Standard deviation of that log.
        outcomes: Outcome -> count (or relative weight).
        facts: How many recorded facts the habit rests on (0 for a given habit).
        recorded: The recorded business seconds, for p50/p90 shown next to the fit.
    """

    mu: float
    sigma: float
    outcomes: Counter[str] = field(default_factory=Counter)
    facts: int = 0
    recorded: list[float] = field(default_factory=list)
    exponential_mean: float | None = None

    @classmethod
    def from_quantiles(cls, p50: float, p90: float, outcomes: dict[str, float]) -> Habit:
        """A given habit: log-normal through a median and a 90th percentile."""
        p50, p90 = max(p50, 1.0), max(p90, p50, 1.0)
        return cls(math.log(p50), math.log(p90 / p50) / Z90, Counter(outcomes))

    @classmethod
    def exponential(cls, mean: float, outcomes: dict[str, float]) -> Habit:
        """A given habit: exponential time to act with this mean."""
        return cls(math.log(mean), 0.0, Counter(outcomes), exponential_mean=max(mean, 1.0))

    @classmethod
    def fitted(cls, seconds: list[float], outcomes: Counter[str]) -> Habit:
        """The log-normal of recorded business seconds (maximum likelihood), with its outcomes."""
        logs = [math.log(max(s, MIN_SECONDS)) for s in seconds]
        mu = statistics.fmean(logs)
        sigma = statistics.pstdev(logs) if len(logs) > 1 else 0.5
        return cls(mu, max(sigma, 0.05), outcomes, len(seconds), sorted(seconds))

    def fitted_p50(self) -> float:
        """The fitted median, in business seconds."""
        if self.exponential_mean is not None:
            return self.exponential_mean * math.log(2)
        return math.exp(self.mu)

    def fitted_p90(self) -> float:
        """The fitted 90th percentile, in business seconds."""
        if self.exponential_mean is not None:
            return self.exponential_mean * math.log(10)
        return math.exp(self.mu + Z90 * self.sigma)

    def recorded_quantile(self, share: float) -> float | None:
        """A quantile of the recorded seconds (nearest rank), None without facts."""
        if not self.recorded:
            return None
        index = min(len(self.recorded) - 1, max(0, math.ceil(share * len(self.recorded)) - 1))
        return self.recorded[index]

    def draw_seconds(self, rng: random.Random, speed: float = 1.0) -> float:
        """Business seconds to act, drawn from the fit."""
        if self.exponential_mean is not None:
            return max(1.0, rng.expovariate(1 / self.exponential_mean) * speed)
        return max(MIN_SECONDS, rng.lognormvariate(self.mu, self.sigma) * speed)

    def draw_outcome(self, rng: random.Random, allowed: Iterable[str]) -> str:
        """An outcome from the mix, among the ones the step allows (uniform without a mix)."""
        allowed = list(allowed)
        weights = {name: w for name, w in self.outcomes.items() if name in allowed and w > 0}
        if not weights:
            return rng.choice(allowed)
        names = sorted(weights)
        return rng.choices(names, [weights[n] for n in names])[0]


@dataclass
class Habits:
    """Every fitted habit: per (rep, process, step), and pooled per (process, step)."""

    per_rep: dict[tuple[str, str, str], Habit] = field(default_factory=dict)
    pooled: dict[tuple[str, str], Habit] = field(default_factory=dict)

    def for_task(self, rep: str, process: str, step: str) -> Habit | None:
        """The habit a rep acts on: their own with enough facts, else the step's pooled one."""
        own = self.per_rep.get((rep, process, step))
        if own is not None and (own.facts >= FEWEST or own.facts == 0):
            return own
        return self.pooled.get((process, step), own)

    def rows(self) -> list[dict[str, object]]:
        """One row per fitted habit for the report: facts, warning, recorded vs fitted."""
        out: list[dict[str, object]] = []
        for (rep, process, step), habit in sorted(self.per_rep.items()):
            if habit.facts == 0:
                out.append(
                    {"rep": rep, "process": process, "step": step, "facts": 0,
                     "warning": "given, not fitted",
                     "fitted_p50_h": _h(habit.fitted_p50()), "fitted_p90_h": _h(habit.fitted_p90())}
                )  # fmt: skip
                continue
            out.append(
                {
                    "rep": rep,
                    "process": process,
                    "step": step,
                    "facts": habit.facts,
                    "warning": (
                        (
                            f"only {habit.facts} facts (< {FEWEST}): the step's pooled habit"
                            if habit.facts < FEWEST
                            else f"only {habit.facts} facts (< {ENOUGH}): a rough fit"
                        )
                        if habit.facts < ENOUGH
                        else ""
                    ),
                    "recorded_p50_h": _h(habit.recorded_quantile(0.5)),
                    "fitted_p50_h": _h(habit.fitted_p50()),
                    "recorded_p90_h": _h(habit.recorded_quantile(0.9)),
                    "fitted_p90_h": _h(habit.fitted_p90()),
                    "outcomes": dict(habit.outcomes),
                }
            )
        return out


def _h(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def fit_habits(engine: Engine, *, since: date | None = None, until: date | None = None) -> Habits:
    """Fit every rep's habits from the task facts opened in a period (UTC dates, inclusive).

    Args:
        engine: The recorded store (read only).
        since: First day of the period (default: the first fact).
        until: Last day of the period (default: the last fact).

    Returns:
        The habits per rep and step, and pooled per step.
    """
    facts = StepFact.__table__.c  # type: ignore[attr-defined]
    query = select(
        facts.assignee,
        facts.process,
        facts.step,
        facts.business_seconds,
        facts.outcome,
    ).where(facts.kind == "task", facts.business_seconds.is_not(None))
    if since is not None:
        query = query.where(facts.opened_at >= datetime.combine(since, time(), UTC))
    if until is not None:
        end = datetime.combine(until + timedelta(days=1), time(), UTC)
        query = query.where(facts.opened_at < end)
    seconds: dict[tuple[str, str, str], list[float]] = {}
    outcomes: dict[tuple[str, str, str], Counter[str]] = {}
    with Session(engine) as session:
        for assignee, process, step, taken, outcome in session.connection().execute(query):
            # A task the ladder handed on counts for who it was given to (as the fact does): its
            # time is theirs, as long as the ladder let them keep it, and then the next holder's
            rep = assignee
            if rep is None or taken is None:
                continue
            key = (rep, process, step)
            seconds.setdefault(key, []).append(float(taken))
            if outcome:
                outcomes.setdefault(key, Counter())[outcome] += 1
    habits = Habits()
    pooled_seconds: dict[tuple[str, str], list[float]] = {}
    pooled_outcomes: dict[tuple[str, str], Counter[str]] = {}
    for key, values in seconds.items():
        mix = outcomes.get(key, Counter())
        habits.per_rep[key] = Habit.fitted(values, mix)
        pooled_seconds.setdefault(key[1:], []).extend(values)
        pooled_outcomes.setdefault(key[1:], Counter()).update(mix)
    for step_key, values in pooled_seconds.items():
        habits.pooled[step_key] = Habit.fitted(values, pooled_outcomes[step_key])
    return habits
