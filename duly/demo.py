"""`duly demo`: weeks of history for a fresh install, written by the real engine.

The demo runs the shipped processes (quote-follow-up, lead-follow-up, support-case; any of them
the definitions lack is skipped) for the team in org.yaml on Temporal's time-skipping test
server, with the real worker, workflows and activities writing the configured database. A
driver plays the outside world:

- the CRM and helpdesk: quotes sent, leads created, support cases opened through the business
  days, and later events about them (a quote accepted, a priority raised, a customer replying,
  a demo booked), all sent through `duly.client.send_event` as the CRM's would be;
- the reps: each open task is completed by its assignee after a delay and with an outcome drawn
  from that person's profile (`PROFILES`): one rep is reliable, one often late, one good some
  weeks and poor others, one improving, managers quick. Delays count business time, so work
  happens in open hours, and a late rep really trips the SLA ladder (warnings, breaches,
  reassignment to the manager). Most alerts are acknowledged by their recipient within a few
  business hours; the rest, and the latest, stay open.

Time. The test server's clock starts at the present and only moves forward, while the history
must end today (or at the moment `ends` names). So the demo runs the weeks a whole number of
52-week years ahead (one, unless `ends` lies further back: the same weekdays), on calendars
open on each day as on the day it stands for (`business_time.standing_in`: the same holidays
and half days), then moves every timestamp it wrote back by as much, keeping each one's local
time of day in its process's calendar; dates inside alert and notification texts move with
them. The last 7 days of the period take no new work, so open tasks are worked off; whatever
is still running at the end is closed through the process's own `on:` events (a quote accepted
or rejected, a case closed), since the test server, and with it every workflow, goes away when
the demo ends.

Nothing leaves the machine. Email actions go to an SMTP sink inside the demo that keeps nothing;
no notification deliverer runs, and the notifications the history queued are marked `failed`
with the reason `NOT_SENT`, so the deliverer of a later `duly up` never sends them.

Everything the driver decides comes from a `random.Random` seeded by `--seed` and the thing
decided about (business key, step, visit), so the same seed gives the same history.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import heapq
import logging
import math
import random
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Engine, bindparam, case, delete, func, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select
from temporalio.runtime import (
    LogForwardingConfig,
    LoggingConfig,
    TelemetryConfig,
    TelemetryFilter,
)
from temporalio.testing import WorkflowEnvironment

from duly.client import ClientError, complete_task, send_event
from duly.demo_progress import DemoProgress, ProgressCallback
from duly.language import business_time
from duly.language.compiler import CompiledProcess
from duly.language.loader import Definitions
from duly.language.model import TaskStep
from duly.settings import Settings
from duly.store import rollup
from duly.store.db import CommitWatch, session_factory, write_session
from duly.store.models import (
    Alert,
    Delivery,
    InboundEvent,
    Instance,
    Rotation,
    SlaEventRow,
    StepFact,
    Task,
)
from duly.time_skipping import ServerClock, skipping_worker
from workflows.messages import EventInput

log = structlog.get_logger(__name__)

YEAR = timedelta(weeks=52)
"""The demo runs a whole number of these ahead, and moves its timestamps back as far."""
DRAIN = timedelta(days=7)
"""The end of the period that takes no new work, so open tasks are worked off."""
STEP = timedelta(minutes=10)
"""The longest the driver lets simulated time run before it looks for newly opened tasks."""
MAX_WEEKS = 26
ACKNOWLEDGED = 0.9
"""The share of alerts their recipient acknowledges (within a few business hours)."""
NOT_SENT = "not sent: simulated history written by `duly demo`"
SHIPPED = ("quote-follow-up", "lead-follow-up", "support-case")

_HOUR = 3600.0
_TASKS = Task.__table__.c  # type: ignore[attr-defined]
# read at every look: built once, and read as plain rows rather than ORM entities
_OPEN_TASKS = sa_select(_TASKS.id, _TASKS.assignee).where(_TASKS.status == "open")
_CHANGED = (
    select(Task, Instance.business_key, Instance.data)
    .join(Instance, col(Instance.id) == col(Task.instance_id))
    .where(col(Task.id).in_(bindparam("ids", expanding=True)))
)


class DemoRefused(Exception):
    """The demo will not run here; the message says why and what to do."""


# --- who does what, how fast ---------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """How one person works: the delay to complete a task, as a share of its target time.

    The share is log-normal around `median` (spread `sigma`); `bad_week_median`, when set, is the
    median of the weeks that go badly (a share `bad_weeks` of them); `improving_to` moves the
    median linearly from `median` in the first week to it in the last. `reach` scales the
    chance of a good outcome (reaching the customer, fixing the case).
    """

    name: str
    median: float
    sigma: float = 0.45
    bad_week_median: float | None = None
    bad_weeks: float = 0.0
    improving_to: float | None = None
    reach: float = 1.0

    def median_in(self, week: int, weeks: int, bad: bool) -> float:
        """The median share in a given week (0-based) of `weeks`."""
        if self.improving_to is not None and weeks > 1:
            return self.median + (self.improving_to - self.median) * week / (weeks - 1)
        if bad and self.bad_week_median is not None:
            return self.bad_week_median
        return self.median


RELIABLE = Profile("reliable", median=0.35, sigma=0.5, reach=1.15)
OFTEN_LATE = Profile("often late", median=0.95, sigma=0.5, reach=0.85)
INCONSISTENT = Profile("inconsistent", median=0.4, bad_week_median=1.35, bad_weeks=0.45)
IMPROVING = Profile("improving", median=1.4, improving_to=0.4, sigma=0.4)
MANAGER = Profile("manager", median=0.45, sigma=0.5)
PROFILES = (RELIABLE, OFTEN_LATE, INCONSISTENT, IMPROVING)
"""Given to each team's members in turn (the second team starts one further along)."""


def assign_profiles(definitions: Definitions) -> dict[str, Profile]:
    """Each active user's profile: team members in turn from `PROFILES`, managers `MANAGER`."""
    profiles: dict[str, Profile] = {}
    for index, (_, team) in enumerate(sorted(definitions.org.teams.items())):
        for position, member in enumerate(team.members):
            profiles.setdefault(member, PROFILES[(position + index) % len(PROFILES)])
    for user, spec in definitions.org.users.items():
        if user not in profiles:
            profiles[user] = MANAGER if spec.role in ("manager", "admin") else RELIABLE
    return profiles


# --- what the outside world looks like -----------------------------------------------------------

FIRST = ("Lee", "Noah", "Mia", "Aisha", "Tom", "Yuki", "Sara", "Jon", "Ines", "Raj", "Olga", "Kai")
LAST = ("Park", "Meyer", "Okoro", "Rossi", "Novak", "Tanaka", "Haddad", "Brown", "Costa", "Berg")
COMPANIES = (
    "Acme Corp",
    "Globex",
    "Initech",
    "Umbrella Foods",
    "Stark Logistics",
    "Wayne Retail",
    "Hooli",
    "Vandelay Imports",
    "Soylent Labs",
    "Tyrell Energy",
)
SUBJECTS = (
    "Cannot log in",
    "Invoice shows the wrong VAT",
    "Export to CSV times out",
    "Password reset mail never arrives",
    "Dashboard is slow",
    "Need a second admin account",
    "Sync with the CRM stopped",
    "API returns 502",
)
ARRIVALS_PER_DAY = {"quote-follow-up": 3.0, "lead-follow-up": 4.0, "support-case": 4.0}
"""Mean new instances per business day, at scale 1."""


# Outcome weights per (process, step); `+` marks the outcomes a profile's `reach` scales
OUTCOMES: dict[tuple[str, str], dict[str, float]] = {
    ("quote-follow-up", "call-customer"): {"+reached": 55, "voicemail": 32, "lost": 13},
    ("quote-follow-up", "manager-review"): {"+done": 1},
    ("lead-follow-up", "first-call"): {"+reached": 55, "no-answer": 38, "wrong-number": 7},
    ("lead-follow-up", "second-call"): {"+reached": 45, "no-answer": 50, "wrong-number": 5},
    ("lead-follow-up", "third-call"): {"+reached": 35, "no-answer": 60, "wrong-number": 5},
    ("lead-follow-up", "qualify"): {
        "suspect": 25,
        "+prospect": 35,
        "+qualified": 25,
        "disqualify": 15,
    },
    ("support-case", "respond"): {"+answered": 1},
    ("support-case", "investigate"): {"need-info": 28, "+fixed": 57, "escalate": 15},
    ("support-case", "engineering"): {"+fixed": 70, "wont-fix": 30},
}
# Business seconds a task without a due time of its own is measured against, by priority
NOMINAL: dict[tuple[str, str], dict[str, float]] = {
    ("support-case", "respond"): {"urgent": 1 * _HOUR, "high": 4 * _HOUR, "": 8 * _HOUR},
    ("support-case", "investigate"): {"urgent": 2 * _HOUR, "high": 6 * _HOUR, "": 14 * _HOUR},
}
DEFAULT_NOMINAL = 4 * _HOUR


# --- the demo -----------------------------------------------------------------------------------


@dataclass
class DemoResult:
    """What a demo run wrote, for the command to print.

    Attributes:
        first_day: The first day of the history (local date of the earliest instance).
        last_day: The last day of the history.
        instances: Instances started, by process.
        facts: Fact rows written, by process.
        breaches: Fact rows whose SLA was breached.
        alerts: Alerts raised, by level.
        completions: Tasks completed by the simulated people.
        events: CRM events sent (starts included).
        emails: Emails the processes sent, caught by the demo's SMTP sink.
        deliveries_marked: Notifications marked not sent.
        seconds: Wall time the run took.
    """

    first_day: date | None = None
    last_day: date | None = None
    instances: dict[str, int] = field(default_factory=dict)
    facts: dict[str, int] = field(default_factory=dict)
    breaches: int = 0
    alerts: dict[str, int] = field(default_factory=dict)
    completions: int = 0
    events: int = 0
    emails: int = 0
    deliveries_marked: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        """Lines for the terminal."""
        period = f"{self.first_day} to {self.last_day}" if self.first_day else "no history"
        lines = [f"duly demo wrote {period} in {self.seconds:.1f} s:"]
        for process in sorted(self.instances):
            lines.append(
                f"  {process}: {self.instances[process]} instances, "
                f"{self.facts.get(process, 0)} fact rows"
            )
        alerts = ", ".join(f"{n} {level}" for level, n in sorted(self.alerts.items()))
        lines += [
            f"  {self.completions} tasks completed by the simulated team, {self.events} CRM "
            f"events, {self.breaches} SLA breaches",
            f"  alerts: {alerts or 'none'}",
            f"  {self.emails} process emails caught by the demo's SMTP sink; "
            f"{self.deliveries_marked} notifications marked not sent",
            "  see it in the web app (duly up) or `duly instances`; the Temporal Web UI does not "
            "show it: it ran on a time-skipping test server, gone with the demo",
        ]
        return "\n".join(lines)


def existing_instances(engine: Engine) -> int:
    """How many instances the database holds."""
    with Session(engine) as session:
        return int(session.exec(select(func.count()).select_from(Instance)).one())


def clear_history(engine: Engine) -> None:
    """Delete every instance and what hangs off it (tasks, facts, alerts, deliveries).

    Users, teams and definitions stay. Round-robin positions restart, so a seeded demo assigns
    the same way each time.
    """
    with write_session(session_factory(engine)) as session:
        for model in (Delivery, Alert, SlaEventRow, StepFact, Task, InboundEvent, Instance):
            session.exec(delete(model))
        session.exec(delete(Rotation))


async def run_demo(
    settings: Settings,
    definitions: Definitions,
    *,
    weeks: int = 6,
    seed: int = 1,
    scale: float = 1.0,
    reset: bool = False,
    force: bool = False,
    ends: datetime | None = None,
    progress: ProgressCallback | None = None,
) -> DemoResult:
    """Fill the settings' database with `weeks` weeks of history; see the module docstring.

    Args:
        settings: duly's settings: the database (its tables are created if missing).
        definitions: The loaded definitions; the shipped processes among them are run.
        weeks: Weeks of new work before the final week that works it off (1 to 26).
        seed: Seeds every choice: the same seed writes the same history.
        scale: Multiplies how much work arrives (1.0: about 55 instances a week).
        reset: Delete the instances already in the database first.
        force: Add to a database that already has instances.
        ends: When the history ends (default: now); a test or a bench names a moment, so
            its history does not change with the day and hour it runs.
        progress: Told where the run is each time simulated time moves on
            (`duly.demo_progress.reporter` shows it to a person).

    Returns:
        What was written.

    Raises:
        DemoRefused: The database already has instances (and neither `reset` nor `force`),
            bad arguments, or none of the shipped processes is defined.
    """
    from duly.worker import prepare_database

    began = time.monotonic()
    if not 1 <= weeks <= MAX_WEEKS:
        raise DemoRefused(f"--weeks must be between 1 and {MAX_WEEKS}, got {weeks}")
    if not 0 < scale <= 20:
        raise DemoRefused(f"--scale must be above 0 and at most 20, got {scale:g}")
    if ends is not None and ends > datetime.now(UTC):
        raise DemoRefused(f"the history must end by now; {ends.isoformat()} is still to come")
    processes = {
        name: definitions.processes[name] for name in SHIPPED if name in definitions.processes
    }
    if not processes:
        raise DemoRefused(
            f"the demo runs the shipped processes ({', '.join(SHIPPED)}), and "
            f"{settings.definitions} defines none of them"
        )
    engine = prepare_database(settings, definitions)
    try:
        held = existing_instances(engine)
        if held and reset:
            clear_history(engine)
        elif held and not force:
            raise DemoRefused(
                f"the database ({_shown(settings)}) already has {held} instances; the demo fills "
                "a fresh install. Use --reset to delete them first, or --force to add to them"
            )
        real_start = datetime.now(UTC)
        ends = ends or real_start
        ahead = _ahead(ends, weeks, real_start)
        played = _standing_in(processes, ends, weeks, ahead)
        try:
            completions, events, emails = await _simulate(
                settings,
                dataclasses.replace(definitions, processes={**definitions.processes, **played}),
                played,
                engine,
                ends=ends + ahead,
                weeks=weeks,
                seed=seed,
                scale=scale,
                progress=progress,
            )
        except BaseException:
            # Interrupted or failed: leave no half history dated a year ahead, and nothing
            # queued for a later deliverer to send
            _discard(engine, after=real_start)
            raise
        result = _move_back(engine, definitions, after=real_start, ahead=ahead)
        result.deliveries_marked = _mark_not_sent(engine, after=real_start, ahead=ahead)
        result.completions, result.events, result.emails = completions, events, emails
        result.seconds = time.monotonic() - began
        return result
    finally:
        engine.dispose()


async def _simulate(
    settings: Settings,
    definitions: Definitions,
    processes: dict[str, CompiledProcess],
    engine: Engine,
    *,
    ends: datetime,
    weeks: int,
    seed: int,
    scale: float,
    progress: ProgressCallback | None = None,
) -> tuple[int, int, int]:
    """Run the weeks to `ends` on the time-skipping server; (tasks done, events sent, emails)."""
    async with skipping_worker(settings, telemetry=_telemetry(), name="demo") as run:
        driver = _Driver(
            run.env,
            definitions,
            processes,
            engine,
            run.task_queue,
            ends=ends,
            weeks=weeks,
            seed=seed,
            scale=scale,
            progress=progress,
        )
        try:
            await driver.run()
        finally:
            driver.close()
    return driver.completions, driver.events, len(run.emails)


def _ahead(ends: datetime, weeks: int, now: datetime) -> timedelta:
    """How far ahead the demo runs: whole years of 52 weeks, so its period starts after `now`.

    The test server's clock starts at the present and only moves forward.
    """
    starts = ends - DRAIN - timedelta(weeks=weeks)
    years = max(1, math.ceil((now + timedelta(days=1) - starts) / YEAR))
    return years * YEAR


def _standing_in(
    processes: dict[str, CompiledProcess], ends: datetime, weeks: int, ahead: timedelta
) -> dict[str, CompiledProcess]:
    """The processes with calendars open `ahead` as on the days their period stands for."""
    first = (ends - DRAIN - timedelta(weeks=weeks)).date() - timedelta(days=7)
    days = (ends.date() - first).days + 14  # the closing of what still runs, with a margin
    return {
        name: process.standing_in(days_of=first, on=first + ahead, days=days)
        for name, process in processes.items()
    }


def _telemetry() -> TelemetryConfig:
    """How the SDK's core logs in a demo: through Python's logging, not to the terminal.

    The test server lacks a capability the SDK's core warns about at each start: the warning
    belongs in the demo's log file with the rest of the engine's lines.
    """
    forwarding = LogForwardingConfig(logger=logging.getLogger("temporalio.core"))
    return TelemetryConfig(
        logging=LoggingConfig(
            filter=TelemetryFilter(core_level="WARN", other_level="ERROR"), forwarding=forwarding
        )
    )


def _discard(engine: Engine, *, after: datetime) -> None:
    """Delete what an unfinished run wrote: its instances (dated after `after`) and more."""
    with write_session(session_factory(engine)) as session:
        ids = list(session.exec(select(Instance.id).where(col(Instance.started_at) > after)))
        session.exec(delete(Delivery).where(col(Delivery.created_at) >= after))
        if ids:
            for model in (Alert, SlaEventRow, StepFact, Task):
                session.exec(delete(model).where(col(model.instance_id).in_(ids)))
            session.exec(delete(Instance).where(col(Instance.id).in_(ids)))
        rollup.rebuild(session)


def _shown(settings: Settings) -> str:
    from sqlalchemy import make_url

    return make_url(settings.database_url).render_as_string(hide_password=True)


# --- the driver ----------------------------------------------------------------------------------


def _rng(seed: int, *parts: object) -> random.Random:
    """A random stream for one decision, the same whatever order decisions are made in."""
    digest = hashlib.sha256(repr((seed, *parts)).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _weighted(rng: random.Random, weights: dict[str, float], reach: float) -> str:
    names = [name.lstrip("+") for name in weights]
    values = [w * (reach if name.startswith("+") else 1.0) for name, w in weights.items()]
    return rng.choices(names, values)[0]


def _poisson(rng: random.Random, mean: float) -> int:
    # Knuth's method: means here are a few a day
    limit, count, product = math.exp(-mean), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count


@dataclass(order=True)
class _Action:
    at: datetime
    order: int
    kind: str = field(compare=False)
    args: dict[str, Any] = field(compare=False, default_factory=dict)


class _Driver:
    """Plays the CRM, the helpdesk and the people against the running engine."""

    def __init__(
        self,
        env: WorkflowEnvironment,
        definitions: Definitions,
        processes: dict[str, CompiledProcess],
        engine: Engine,
        task_queue: str,
        *,
        ends: datetime,
        weeks: int,
        seed: int,
        scale: float,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.env = env
        self.definitions = definitions
        self.processes = processes
        self.sessions = session_factory(engine)
        self.commits = CommitWatch(engine)  # a look for tasks with none written is skipped
        self.task_queue = task_queue
        self.ends = ends
        self.weeks = weeks
        self.seed = seed
        self.scale = scale
        self.profiles = assign_profiles(definitions)
        self.queue: list[_Action] = []
        self.order = 0
        self.seen: dict[str, Task] = {}  # open task id -> it as last looked at, with its assignee
        self.bad_weeks: dict[tuple[str, int], bool] = {}
        self.completions = 0
        self.events = 0
        self.started = 0  # instances the arrivals started
        self.start = datetime.now(UTC)
        self.progress = progress

    def close(self) -> None:
        """Let go of the store (the run is over)."""
        self.commits.close()

    def schedule(self, at: datetime, kind: str, **args: Any) -> None:
        self.order += 1
        heapq.heappush(self.queue, _Action(at, self.order, kind, args))

    async def now(self) -> datetime:
        return (await self.env.get_current_time()).astimezone(UTC)

    async def advance(self, to: datetime) -> None:
        now = await self.now()
        if to > now:
            await self.env.sleep(to - now)

    async def run(self) -> None:
        # The period ends where the one it stands for ends, whole years later; new work arrives
        # in the `weeks` weeks before its last DRAIN
        end = self.ends
        stop_new = end - DRAIN
        self.start = stop_new - timedelta(weeks=self.weeks)
        await self.advance(self.start)
        self.plan_arrivals(self.start, stop_new)
        await self.work_until(end)
        await self.close_remaining()
        self.acknowledge_alerts(end)

    async def work_until(self, end: datetime) -> None:
        """Let time run to `end`, doing each planned action and looking for new tasks."""
        clock = ServerClock(self.env)
        now = await clock.read()
        while True:
            while self.queue and self.queue[0].at <= now:
                await self.perform(heapq.heappop(self.queue))
            self.report(now, end)
            if now >= end:
                break
            nxt = min(self.queue[0].at if self.queue else end, end)
            # While a calendar is open a timer may open a task (a retry after a wait): look
            # every STEP; while all are closed, jump to the next opening
            opening = min(
                business_time.next_opening(p.calendar, now) for p in self.processes.values()
            )
            target = min(nxt, max(opening, now) + STEP)
            now = await clock.sleep(max(target - now, timedelta(milliseconds=1)))
            await self.look_for_tasks(target)

    def report(self, now: datetime, end: datetime) -> None:
        """Tell `progress` how much of the simulated period is covered."""
        if self.progress is None:
            return
        day = timedelta(days=1)
        self.progress(
            DemoProgress(
                done=(min(now, end) - self.start) / day,
                total=(end - self.start) / day,
                instances=self.started,
                completions=self.completions,
            )
        )

    # --- arrivals --------------------------------------------------------------------------

    def plan_arrivals(self, start: datetime, stop: datetime) -> None:
        counter = 0
        for name, process in self.processes.items():
            zone = ZoneInfo(process.calendar.timezone)
            day = start.astimezone(zone).date()
            while True:
                ranges = process.calendar.open_ranges(day)
                rng = _rng(self.seed, "arrivals", name, day.isoformat())
                count = _poisson(rng, ARRIVALS_PER_DAY.get(name, 2.0) * self.scale) if ranges else 0
                open_minutes = [m for lo, hi in ranges for m in range(lo, hi)]
                for _ in range(count):
                    minute = rng.choice(open_minutes)
                    local = datetime.combine(day, datetime.min.time(), zone) + timedelta(
                        minutes=minute, seconds=rng.randrange(60)
                    )
                    at = local.astimezone(UTC)
                    if start <= at < stop:
                        counter += 1
                        self.schedule(at, "arrive", process=name, number=counter)
                day += timedelta(days=1)
                if datetime.combine(day, datetime.min.time(), zone) >= stop:
                    break

    def week_of(self, at: datetime) -> int:
        return max(0, min(self.weeks - 1, (at - self.start) // timedelta(weeks=1)))

    def arrival_data(self, process: str, number: int) -> tuple[str, dict[str, Any]]:
        rng = _rng(self.seed, "data", process, number)
        team = self.processes[process].spec.team
        members = list(self.definitions.org.teams[team].members) if team else []
        owner = rng.choice(members) if members and rng.random() < 0.9 else None
        first, last = rng.choice(FIRST), rng.choice(LAST)
        contact = f"{first} {last}"
        email = f"{first.lower()}.{last.lower()}@example.com"
        company = rng.choice(COMPANIES)
        data: dict[str, Any]
        if process == "quote-follow-up":
            key = f"Q-{10000 + number}"
            amount = round(rng.lognormvariate(math.log(18000), 0.9), -2)
            data = {
                "quote": {"id": key, "number": key, "amount": amount},
                "contact": {"name": contact, "email": email, "company": company},
            }
            event = "quote.sent"
        elif process == "lead-follow-up":
            key = f"L-{20000 + number}"
            source = rng.choices(["referral", "web", "event", "partner"], [20, 50, 15, 15])[0]
            data = {
                "lead": {
                    "id": key,
                    "name": contact,
                    "company": company,
                    "email": email,
                    "source": source,
                }
            }
            event = "lead.created"
        else:
            key = f"C-{30000 + number}"
            priority = rng.choices(["urgent", "high", "normal", "low"], [10, 25, 50, 15])[0]
            data = {
                "case": {
                    "id": key,
                    "subject": rng.choice(SUBJECTS),
                    "priority": priority,
                    "contact_name": contact,
                    "contact_email": email,
                    "company": company,
                }
            }
            event = "case.opened"
        if owner:
            data["owner"] = owner
        return event, data

    async def arrive(self, process: str, number: int, at: datetime) -> None:
        event, data = self.arrival_data(process, number)
        await self.send(event, data, f"{process}/{number}/start")
        self.started += 1
        rng = _rng(self.seed, "later", process, number)
        calendar = self.processes[process].calendar
        later = business_time.add_business_seconds
        if process == "quote-follow-up":
            quote = {"quote": {"id": data["quote"]["id"]}}
            if rng.random() < 0.12:  # the customer signs before (or while) the rep calls
                when = later(calendar, at, rng.uniform(2, 20) * _HOUR)
                self.schedule(when, "event", type="quote.accepted", data=quote, tag=number)
            elif rng.random() < 0.05:
                when = later(calendar, at, rng.uniform(4, 30) * _HOUR)
                self.schedule(when, "event", type="quote.rejected", data=quote, tag=number)
        elif process == "lead-follow-up":
            lead = {"lead": {"id": data["lead"]["id"]}}
            roll = rng.random()
            if roll < 0.03:
                when = later(calendar, at, rng.uniform(1, 24) * _HOUR)
                self.schedule(when, "event", type="lead.converted", data=lead, tag=number)
            elif roll < 0.06:
                when = later(calendar, at, rng.uniform(1, 24) * _HOUR)
                self.schedule(when, "event", type="lead.deleted", data=lead, tag=number)
        else:
            case = data["case"]
            roll = rng.random()
            if roll < 0.12:  # the customer calls back: the priority goes up (or down)
                raised = {"low": "high", "normal": "urgent", "high": "urgent", "urgent": "high"}
                changed = {"case": {"id": case["id"], "priority": raised[case["priority"]]}}
                when = later(calendar, at, rng.uniform(0.5, 3) * _HOUR)
                self.schedule(when, "event", type="case.updated", data=changed, tag=number)
            elif roll < 0.16:
                when = later(calendar, at, rng.uniform(2, 40) * _HOUR)
                self.schedule(
                    when, "event", type="case.closed", data={"case": {"id": case["id"]}}, tag=number
                )

    async def send(self, event_type: str, data: dict[str, Any], tag: str) -> None:
        event_id = f"demo-{self.seed}-{tag}-{event_type}"
        await send_event(
            self.env.client,
            self.definitions,
            EventInput(id=event_id, type=event_type, data=data),
            task_queue=self.task_queue,
        )
        self.events += 1

    # --- the people ------------------------------------------------------------------------

    async def look_for_tasks(self, now: datetime) -> None:
        """Schedule the completion of every task that opened (or changed hands) since last look."""
        if not self.commits.committed():
            return
        with self.sessions() as session:
            current: dict[str, str | None] = dict(session.connection().execute(_OPEN_TASKS).all())
            changed = [
                tid
                for tid, who in current.items()
                if tid not in self.seen or self.seen[tid].assignee != who
            ]
            rows = session.exec(_CHANGED, params={"ids": changed}).all() if changed else []
        open_ids = set(current)
        for task, key, data in rows:
            if task.status != "open":
                continue
            handed_over = task.id in self.seen  # the ladder gave it to someone else
            self.seen[task.id] = task
            when = self.completion_time(task, key, dict(data), now, handed_over=handed_over)
            self.schedule(when, "complete", task=task.id, key=key, assignee=task.assignee)
        for gone in set(self.seen) - open_ids:
            del self.seen[gone]

    def completion_time(
        self, task: Task, key: str, data: dict[str, Any], now: datetime, *, handed_over: bool
    ) -> datetime:
        """When the assignee completes the task: a share of its target time, by their profile.

        A task the ladder handed over counts from now, when its new assignee gets it.
        """
        process = self.processes[task.process]
        calendar = process.calendar
        opened = max(task.opened_at, self.start)
        if task.due_at is not None and task.due_at > opened:
            target = business_time.elapsed(calendar, opened, task.due_at).total_seconds()
        else:
            priority = str((data.get("case") or {}).get("priority", ""))
            nominal = NOMINAL.get((task.process, task.step), {})
            target = nominal.get(priority, nominal.get("", DEFAULT_NOMINAL))
        target = max(target, 1800.0)
        assignee = task.assignee or ""
        profile = self.profiles.get(assignee, RELIABLE)
        week = self.week_of(opened)
        bad = self.is_bad_week(assignee, week, profile)
        rng = _rng(self.seed, "delay", task.process, key, task.step, task.visit, assignee)
        share = rng.lognormvariate(
            math.log(profile.median_in(week, self.weeks, bad)), profile.sigma
        )
        start = max(opened, now) if handed_over else opened
        delay = max(300.0, share * target)
        return max(business_time.add_business_seconds(calendar, start, delay), now)

    def is_bad_week(self, user: str, week: int, profile: Profile) -> bool:
        if profile.bad_week_median is None:
            return False
        if (user, week) not in self.bad_weeks:
            rng = _rng(self.seed, "week", user, week)
            self.bad_weeks[(user, week)] = rng.random() < profile.bad_weeks
        return self.bad_weeks[(user, week)]

    async def perform(self, action: _Action) -> None:
        if action.kind == "arrive":
            await self.arrive(action.args["process"], action.args["number"], action.at)
        elif action.kind == "event":
            tag = f"{action.args['tag']}-{action.order}"
            await self.send(action.args["type"], action.args["data"], tag)
        elif action.kind == "complete":
            await self.complete(
                action.args["task"], action.args["key"], action.args["assignee"], action.at
            )

    async def complete(self, task_id: str, key: str, assignee: str | None, at: datetime) -> None:
        # As the look just before this moment saw it: the store has not changed since
        task = self.seen.get(task_id)
        if task is None or task.assignee != assignee:
            return  # closed by an event meanwhile, or handed to someone else (rescheduled)
        rng = _rng(self.seed, "outcome", task.process, key, task.step, task.visit)
        outcome = self.choose_outcome(task, rng)
        fields = self.fill_in(task, key, outcome, rng, at)
        try:
            await complete_task(
                self.env.client,
                task_id,
                outcome,
                fields=fields,
                by=assignee,
                note="completed in the duly demo",
            )
        except ClientError as exc:
            log.info("demo_completion_refused", task=task_id, problem=str(exc))
            return
        self.completions += 1
        self.follow_up(task, key, outcome, rng, at)

    def fill_in(
        self, task: Task, key: str, outcome: str, rng: random.Random, at: datetime
    ) -> dict[str, Any]:
        """The values the assignee fills in: a lead's budget and timeline."""
        fields: dict[str, Any] = {}
        if "budget" in task.fields:
            fields["budget"] = int(round(rng.lognormvariate(math.log(30000), 0.7), -3))
        if "timeline" in task.fields:
            # One of the step's own options: a value it does not offer is refused, and the
            # task would stay open to the end of the history
            fields["timeline"] = rng.choice(self.options(task, "timeline") or ["this quarter"])
        return fields

    def options(self, task: Task, field_name: str) -> list[str]:
        """A choice field's options, as the task's step declares them (none if it does not)."""
        step = self.processes[task.process].spec.steps.get(task.step)
        spec = step.fields.get(field_name) if isinstance(step, TaskStep) else None
        return list(spec.options or []) if spec is not None else []

    def choose_outcome(self, task: Task, rng: random.Random) -> str:
        """The outcome the assignee picks, by the step's usual mix and their profile's reach."""
        profile = self.profiles.get(task.assignee or "", RELIABLE)
        weights = OUTCOMES.get((task.process, task.step))
        if weights is None:
            return rng.choice(task.outcomes)
        return _weighted(
            rng,
            {k: v for k, v in weights.items() if k.lstrip("+") in task.outcomes}
            or dict.fromkeys(task.outcomes, 1.0),
            profile.reach,
        )

    def follow_up(
        self, task: Task, key: str, outcome: str, rng: random.Random, done: datetime
    ) -> None:
        """The outside world's answer to a task completed at `done`: a demo booked, a reply."""
        calendar = self.processes[task.process].calendar
        later = business_time.add_business_seconds
        start = max(done, self.start)
        if task.process == "lead-follow-up" and outcome == "prospect" and rng.random() < 0.7:
            when = later(calendar, start, rng.uniform(3, 30) * _HOUR)
            self.schedule(when, "event", type="demo.booked", data={"lead": {"id": key}}, tag=key)
        if task.process == "support-case" and outcome == "need-info" and rng.random() < 0.75:
            when = later(calendar, start, rng.uniform(2, 24) * _HOUR)
            self.schedule(
                when, "event", type="case.customer_replied", data={"case": {"id": key}}, tag=key
            )

    def acknowledge_alerts(self, end: datetime) -> None:
        """People acknowledge most alerts within hours; some, and the latest, stay open."""
        with write_session(self.sessions) as session:
            alerts = session.exec(
                select(Alert).where(
                    col(Alert.acknowledged_at).is_(None), col(Alert.created_at) >= self.start
                )
            ).all()
            for alert in alerts:
                compiled = self.processes.get(alert.process or "")
                if compiled is None or alert.instance_id is None:
                    continue
                # The alert's key without the run id, which a run makes anew
                stable = alert.key.replace(alert.instance_id, alert.instance_id.rsplit("/", 1)[0])
                rng = _rng(self.seed, "ack", stable)
                if rng.random() >= ACKNOWLEDGED:
                    continue
                at = business_time.add_business_seconds(
                    compiled.calendar, alert.created_at, rng.uniform(0.25, 6) * _HOUR
                )
                if at <= end:
                    alert.acknowledged_at, alert.acknowledged_by = at, alert.recipient
                    session.add(alert)

    async def close_remaining(self) -> None:
        """End what still runs through the process's `on:` events, as the CRM would close it."""
        with self.sessions() as session:
            running = session.exec(
                select(Instance.process, Instance.business_key).where(Instance.status == "running")
            ).all()
        for process, key in running:
            compiled = self.processes.get(process)
            if compiled is None or not compiled.spec.on:
                continue
            rng = _rng(self.seed, "close", process, key)
            event_type = rng.choice(sorted(compiled.spec.on))
            field_name = {"quote-follow-up": "quote", "lead-follow-up": "lead"}.get(process, "case")
            await self.send(event_type, {field_name: {"id": key}}, f"{key}-close")
        await self.env.sleep(timedelta(minutes=1))
        for _ in range(100):
            with self.sessions() as session:
                left = session.exec(
                    select(func.count()).select_from(Instance).where(Instance.status == "running")
                ).one()
            if not left:
                return
            await asyncio.sleep(0.05)
        log.warning("demo_instances_left_running", count=left)


# --- back to the past -----------------------------------------------------------------------


_STAMP = re.compile(r"(\d{4}-\d{2}-\d{2} \d{2}:\d{2}) ([A-Z][A-Za-z0-9+-]{1,5})")


def _back(moment: datetime | None, zone: tzinfo, ahead: timedelta) -> datetime | None:
    """The same local time of day in `zone`, `ahead` earlier, in UTC."""
    if moment is None:
        return None
    local = moment.astimezone(zone).replace(tzinfo=None) - ahead
    return local.replace(tzinfo=zone).astimezone(UTC)


def _back_in_text(text: str, zone: tzinfo, ahead: timedelta) -> str:
    """Move the `YYYY-MM-DD HH:MM ZONE` stamps of an alert or notification back by `ahead`."""

    def shift(match: re.Match[str]) -> str:
        local = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M") - ahead
        return local.replace(tzinfo=zone).strftime("%Y-%m-%d %H:%M %Z")

    return _STAMP.sub(shift, text)


def _move_back(
    engine: Engine, definitions: Definitions, *, after: datetime, ahead: timedelta
) -> DemoResult:
    """Move what the run wrote (every row dated after `after`) back by `ahead`; count it."""
    result = DemoResult()
    zones = {name: ZoneInfo(p.calendar.timezone) for name, p in definitions.processes.items()}
    with write_session(session_factory(engine)) as session:
        instances = session.exec(select(Instance).where(col(Instance.started_at) > after)).all()
        zone_of = {row.id: zones.get(row.process, UTC) for row in instances}
        ids = list(zone_of)
        first: datetime | None = None
        last: datetime | None = None
        for row in instances:
            zone = zone_of[row.id]
            row.started_at = _back(row.started_at, zone, ahead) or row.started_at
            row.ended_at = _back(row.ended_at, zone, ahead)
            session.add(row)
            result.instances[row.process] = result.instances.get(row.process, 0) + 1
            first = min(first or row.started_at, row.started_at)
            last = max(last or row.started_at, row.ended_at or row.started_at)
        _rewrite(session, Task, ids, zone_of, ("opened_at", "due_at", "closed_at"), ahead=ahead)
        _rewrite(
            session,
            StepFact,
            ids,
            zone_of,
            ("opened_at", "due_at", "closed_at", "breached_at"),
            ahead=ahead,
        )
        _rewrite(session, SlaEventRow, ids, zone_of, ("at", "due_at"), ahead=ahead)
        _rewrite(
            session,
            Alert,
            ids,
            zone_of,
            ("created_at", "acknowledged_at", "resolved_at"),
            text="message",
            ahead=ahead,
        )
        # The weekly rollup counted the facts in the weeks they were written in: count again
        rollup.rebuild(session)
        facts = (
            session.exec(
                select(
                    StepFact.process,
                    func.count(),
                    func.sum(case((col(StepFact.sla_met).is_(False), 1), else_=0)),
                )
                .where(col(StepFact.instance_id).in_(ids))
                .group_by(StepFact.process)
            ).all()
            if ids
            else []
        )
        for process, count, breached in facts:
            result.facts[process] = int(count)
            result.breaches += int(breached or 0)
        levels = (
            session.exec(
                select(Alert.level, func.count())
                .where(col(Alert.instance_id).in_(ids))
                .group_by(Alert.level)
            ).all()
            if ids
            else []
        )
        result.alerts = {level: int(n) for level, n in levels}
    if first is not None and last is not None:
        result.first_day, result.last_day = first.date(), last.date()
    return result


def _rewrite(
    session: Session,
    model: Any,
    ids: list[str],
    zone_of: Mapping[str, tzinfo],
    columns: Iterable[str],
    *,
    ahead: timedelta,
    text: str | None = None,
) -> None:
    """Move a table's timestamps (and dates in one text column) back, row by row, in bulk."""
    columns = tuple(columns)
    if not ids:
        return
    rows = session.exec(select(model).where(col(model.instance_id).in_(ids))).all()
    table = model.__table__
    changes: list[dict[str, Any]] = []
    for row in rows:
        zone = zone_of[row.instance_id]
        change: dict[str, Any] = {"row_id": row.id}
        for name in columns:
            change[f"new_{name}"] = _back(getattr(row, name), zone, ahead)
        if text is not None:
            change[f"new_{text}"] = _back_in_text(getattr(row, text), zone, ahead)
        changes.append(change)
    if not changes:
        return
    names = (*columns, *([text] if text else []))
    values: dict[str, Any] = {name: bindparam(f"new_{name}") for name in names}
    statement = update(table).where(table.c.id == bindparam("row_id")).values(**values)
    session.connection().execute(statement, changes)
    session.expire_all()


def _mark_not_sent(engine: Engine, *, after: datetime, ahead: timedelta) -> int:
    """Mark the notifications the run queued as not sent, with their dates moved back too."""
    with write_session(session_factory(engine)) as session:
        rows = session.exec(
            select(Delivery).where(Delivery.status == "pending", col(Delivery.created_at) >= after)
        ).all()
        for row in rows:
            # Notifications are worded in the recipient's process zone; UTC stamps read the same
            row.subject = _back_in_text(row.subject, _zone_for_text(row.body), ahead)
            row.body = _back_in_text(row.body, _zone_for_text(row.body), ahead)
            row.status, row.last_error = "failed", NOT_SENT
            session.add(row)
        return len(rows)


_ABBREVIATIONS: dict[str, str] = {
    "EST": "America/New_York",
    "EDT": "America/New_York",
    "CET": "Europe/Berlin",
    "CEST": "Europe/Berlin",
}


def _zone_for_text(text: str) -> tzinfo:
    match = _STAMP.search(text)
    name = _ABBREVIATIONS.get(match.group(2), "") if match else ""
    return ZoneInfo(name) if name else UTC


def per_rep(engine: Engine) -> dict[str, Counter[str]]:
    """Fact rows per assignee, split by SLA met / breached / none (for tests)."""
    spread: dict[str, Counter[str]] = {}
    with Session(engine) as session:
        for assignee, met in session.exec(select(StepFact.assignee, StepFact.sla_met)):
            if assignee is None:
                continue
            label = "none" if met is None else ("met" if met else "breached")
            spread.setdefault(assignee, Counter())[label] += 1
    return spread
