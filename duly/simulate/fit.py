"""Reps' habits fitted from the recorded facts, and shown next to what was recorded.

A habit is, per rep and task step: the business time from the task opening to the rep's action
(log-normal, fitted on the logs of the recorded business seconds), and the outcome mix. A habit
resting on fewer than `ENOUGH` facts is flagged; below `FEWEST`, the simulation uses the step's
habit pooled over every rep instead, so one rep's three lucky calls do not become a law.

A task an event ended before the rep acted (the lead deleted in the CRM, the quote accepted
before the call), and a task still open, say only that the rep had not acted after that long.
Leaving them out would keep the slow tail out of the fit and make every rep look quicker than
they are, all the more where the CRM often closes work early; the fit counts them as censored
(maximum likelihood of a log-normal with right-censored values).
"""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import Engine, select
from sqlmodel import Session

from duly.language import business_time
from duly.language.business_time import BusinessCalendar
from duly.store.models import StepFact, Task

ENOUGH = 20
"""Fewer facts than this and a rep's own habit is flagged as resting on too few."""
FEWEST = 5
"""Fewer facts than this and the step's habit pooled over every rep is used instead."""
Z90 = 1.2815515655446004
"""The standard normal's 90th percentile: p90 of a log-normal is exp(mu + Z90 * sigma)."""
MIN_SECONDS = 60.0
MAX_SECONDS = 60 * 8 * 3600.0
"""The longest a drawn time to act may be: 60 business days of 8 hours, past any run's end."""
MAX_SIGMA = 2.5
"""The widest a fitted spread may be (log seconds): a p90 about 25 times the median."""


@dataclass
class Habit:
    """How one rep (or every rep, pooled) acts on one task step.

    Attributes:
        mu: Mean of the log of business seconds to act.
        sigma: Standard deviation of that log.
        outcomes: Outcome -> count (or relative weight).
        facts: How many recorded facts the habit rests on (0 for a given habit).
        recorded: The recorded business seconds, for p50/p90 shown next to the fit.
        exponential_mean: For an exponential habit (given), its mean; None for a log-normal.
        censored: Tasks the rep had not acted on yet when an event ended them (or still open).
    """

    mu: float
    sigma: float
    outcomes: Counter[str] = field(default_factory=Counter)
    facts: int = 0
    recorded: list[float] = field(default_factory=list)
    exponential_mean: float | None = None
    censored: int = 0

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
    def fitted(
        cls, seconds: list[float], outcomes: Counter[str], censored: Iterable[float] = ()
    ) -> Habit:
        """The log-normal of recorded business seconds (maximum likelihood), with its outcomes.

        Args:
            seconds: Business seconds from each task's opening to the rep's action.
            outcomes: Outcome -> count.
            censored: Business seconds after which other tasks had no action yet: ended by an
                event first, or still open.
        """
        logs = [math.log(max(s, MIN_SECONDS)) for s in seconds]
        mu = statistics.fmean(logs)
        sigma = max(statistics.pstdev(logs) if len(logs) > 1 else 0.5, 0.05)
        cuts = [math.log(max(c, MIN_SECONDS)) for c in censored]
        if cuts:
            mu, sigma = _censored_fit(logs, cuts, mu, sigma)
        return cls(mu, sigma, outcomes, len(seconds), sorted(seconds), censored=len(cuts))

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
            return min(max(1.0, rng.expovariate(1 / self.exponential_mean) * speed), MAX_SECONDS)
        return min(max(MIN_SECONDS, rng.lognormvariate(self.mu, self.sigma) * speed), MAX_SECONDS)

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
                    "censored": habit.censored,
                }
            )
        return out


def _h(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 3600, 2)


def _censored_fit(
    logs: list[float], cuts: list[float], mu: float, sigma: float
) -> tuple[float, float]:
    """A normal's mean and spread from values and right-censored values (EM), on log seconds.

    Each censored value is replaced by what the current fit expects beyond its cut, and the
    fit is made again, until it settles.
    """
    total = len(logs) + len(cuts)
    for _ in range(200):
        first, second = sum(logs), sum(y * y for y in logs)
        for cut in cuts:
            alpha = (cut - mu) / sigma
            tail = 0.5 * math.erfc(alpha / math.sqrt(2))  # P(value > cut)
            density = math.exp(-alpha * alpha / 2) / math.sqrt(2 * math.pi)
            ratio = density / tail if tail > 1e-12 else alpha + 1 / alpha  # inverse Mills
            first += mu + sigma * ratio
            second += mu * mu + sigma * sigma + sigma * (cut + mu) * ratio
        new_mu = first / total
        new_sigma = min(max(math.sqrt(max(second / total - new_mu * new_mu, 0.0)), 0.05), MAX_SIGMA)
        settled = abs(new_mu - mu) < 1e-7 and abs(new_sigma - sigma) < 1e-7
        mu, sigma = new_mu, new_sigma
        if settled:
            break
    return mu, sigma


def fit_habits(
    engine: Engine,
    *,
    since: date | None = None,
    until: date | None = None,
    calendars: Mapping[str, BusinessCalendar] | None = None,
    now: datetime | None = None,
) -> Habits:
    """Fit every rep's habits from the task facts opened in a period (UTC dates, inclusive).

    Args:
        engine: The recorded store (read only).
        since: First day of the period (default: the first fact).
        until: Last day of the period (default: the last fact).
        calendars: Each process's calendar, to count in business time how long the tasks an
            event ended, or still open, had waited; without one, those tasks are left out.
        now: The store's present, for the tasks still open (default: the clock's).

    Returns:
        The habits per rep and step, and pooled per step.
    """
    facts = StepFact.__table__.c  # type: ignore[attr-defined]
    tasks = Task.__table__.c  # type: ignore[attr-defined]
    query = select(
        facts.assignee,
        facts.process,
        facts.step,
        facts.business_seconds,
        facts.outcome,
        facts.opened_at,
        facts.closed_at,
    ).where(facts.kind == "task")
    still_open = select(tasks.assignee, tasks.process, tasks.step, tasks.opened_at).where(
        tasks.status == "open"
    )
    if since is not None:
        begin = datetime.combine(since, time(), UTC)
        query = query.where(facts.opened_at >= begin)
        still_open = still_open.where(tasks.opened_at >= begin)
    if until is not None:
        end = datetime.combine(until + timedelta(days=1), time(), UTC)
        query = query.where(facts.opened_at < end)
        still_open = still_open.where(tasks.opened_at < end)
    calendars = calendars or {}
    present = now or datetime.now(UTC)
    seconds: dict[tuple[str, str, str], list[float]] = {}
    outcomes: dict[tuple[str, str, str], Counter[str]] = {}
    cut: dict[tuple[str, str, str], list[float]] = {}

    def waited(process: str, opened: datetime, closed: datetime) -> float | None:
        calendar = calendars.get(process)
        if calendar is None:
            return None
        return business_time.elapsed(calendar, opened, closed).total_seconds()

    with Session(engine) as session:
        rows = session.connection().execute(query).all()
        open_rows = session.connection().execute(still_open).all() if calendars else []
    for assignee, process, step, taken, outcome, opened, closed in rows:
        # A task the ladder handed on counts for who it was given to (as the fact does): its
        # time is theirs, as long as the ladder let them keep it, and then the next holder's
        if assignee is None:
            continue
        key = (assignee, process, step)
        if taken is not None:
            seconds.setdefault(key, []).append(float(taken))
            if outcome:
                outcomes.setdefault(key, Counter())[outcome] += 1
        elif closed is not None and (so_far := waited(process, opened, closed)) is not None:
            cut.setdefault(key, []).append(so_far)  # ended by an event before the rep acted
    for assignee, process, step, opened in open_rows:
        if assignee is not None and (so_far := waited(process, opened, present)) is not None:
            cut.setdefault((assignee, process, step), []).append(so_far)
    habits = Habits()
    pooled_seconds: dict[tuple[str, str], list[float]] = {}
    pooled_outcomes: dict[tuple[str, str], Counter[str]] = {}
    pooled_cut: dict[tuple[str, str], list[float]] = {}
    for key, values in seconds.items():
        mix = outcomes.get(key, Counter())
        habits.per_rep[key] = Habit.fitted(values, mix, cut.get(key, []))
        pooled_seconds.setdefault(key[1:], []).extend(values)
        pooled_outcomes.setdefault(key[1:], Counter()).update(mix)
    for key, values in cut.items():
        pooled_cut.setdefault(key[1:], []).extend(values)
    for step_key, values in pooled_seconds.items():
        habits.pooled[step_key] = Habit.fitted(
            values, pooled_outcomes[step_key], pooled_cut.get(step_key, [])
        )
    return habits
