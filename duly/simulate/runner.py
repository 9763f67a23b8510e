"""One run of a scenario on Temporal's time-skipping server with the real worker.

A run gets a fresh SQLite store in a temporary folder (never the live database), a fresh
test server, and the real worker, workflows and activities (`duly.time_skipping`). `duly demo`'s
driver plays the outside world; here its reps act with the habits fitted from the live facts
(or given), its arrivals follow the scenario, and reps on leave are inactive in the org for
their dates, so the engine's assignment skips them. Nothing is sent: emails go to an in-memory
SMTP sink, webhooks and CRM writes are checked and taken as accepted without a connection
(`activities.actions.SIMULATED_HANDLERS`), nobody has a notification channel in the run's store
(so none is queued, let alone delivered), and the store is deleted when the run is measured.
"""

from __future__ import annotations

import asyncio
import copy
import heapq
import math
import random
import re
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select
from temporalio.runtime import LoggingConfig, TelemetryConfig, TelemetryFilter

from activities.actions import SIMULATED_HANDLERS
from duly.client import send_event
from duly.demo import SHIPPED, _Driver, _poisson, _rng
from duly.language import business_time
from duly.language.compiler import CompiledProcess
from duly.language.loader import Definitions
from duly.language.model import FieldSpec, TaskStep, field_value_problem
from duly.settings import Settings
from duly.simulate.fit import Habit, Habits
from duly.simulate.measure import RunMeasures, measure_run
from duly.simulate.scenario import Arrivals, Scenario, business_seconds
from duly.simulate.scenario import Habit as HabitSpec
from duly.simulate.watch import SETTLE, EngineWatch
from duly.store.db import create_all, make_engine, session_factory, write_session
from duly.store.models import Instance, Task, User, UserChannel
from duly.time_skipping import ServerClock, skipping_worker
from workflows.messages import EventInput

DRAIN = timedelta(days=3)
"""Time after the last week in which the work already opened is done (not measured)."""

NOWHERE = "http://127.0.0.1:9"
"""The discard port: where the CRM API roots point in a simulation, should anything try."""


def sealed(settings: Settings) -> Settings:
    """Settings that reach nothing: no host allowed, no CRM (mail goes to the in-memory sink).

    A simulation's settings start from the environment (DULY_*), which on a real install names
    the CRM's token and the hosts webhooks may reach: every way out is closed here, and
    `skipping_worker` points the SMTP server at its own sink.
    """
    return settings.model_copy(
        update={
            "outbound_hosts": "",  # channels, and a webhook run by any other handler, reach none
            "hubspot_token": "",
            "hubspot_api_url": NOWHERE,
            "salesforce_token": "",
            "salesforce_instance_url": "",
            "pipedrive_api_token": "",
            "pipedrive_api_url": NOWHERE,
        }
    )


def without_channels(engine: Engine) -> None:
    """Take every notification channel out of a run's store: a run tells nobody anything.

    The tasks and alerts are written as ever; only the messages about them, which no deliverer
    would send, are neither built nor queued (`duly.notify.messages`).
    """
    with write_session(session_factory(engine)) as session:
        session.exec(delete(UserChannel))


def first_day(scenario: Scenario, today: date | None = None) -> date:
    """The first day measured: the scenario's `start`, else the Monday after its warm-up."""
    if scenario.spec.start is not None:
        return scenario.spec.start
    today = today or datetime.now(UTC).date()
    return today + timedelta(days=7 - today.weekday(), weeks=scenario.spec.warm_up)


def recorded_arrivals(
    engine: Engine, scenario: Scenario, start: date
) -> list[tuple[datetime, str, dict[str, Any]]]:
    """The live store's instances in each `as_recorded` period, moved whole weeks to the run.

    The period's first day goes to the run's first week: its warm-up, if any, else `start`'s.
    Each keeps its weekday and local time of day in its process's calendar.
    """
    out: list[tuple[datetime, str, dict[str, Any]]] = []
    first = start - timedelta(weeks=scenario.spec.warm_up)
    for name, arrivals in scenario.spec.arrivals.items():
        period = arrivals.as_recorded
        if period is None:
            continue
        begin = datetime.combine(period.from_, datetime.min.time(), UTC)
        end = datetime.combine(period.to + timedelta(days=1), datetime.min.time(), UTC)
        shift = timedelta(weeks=math.ceil((first - period.from_).days / 7))
        with Session(engine) as session:
            rows = session.exec(
                select(Instance.started_at, Instance.data)
                .where(Instance.process == name)
                .where(col(Instance.started_at) >= begin, col(Instance.started_at) < end)
                .order_by(col(Instance.started_at))
            ).all()
        zone = ZoneInfo(scenario.definitions.processes[name].calendar.timezone)
        out += [(_weeks_later(at, shift, zone), name, dict(data)) for at, data in rows]
    return out


def _weeks_later(at: datetime, weeks: timedelta, zone: ZoneInfo) -> datetime:
    """`at` moved by whole weeks at the same local time of day, across a change of UTC offset.

    A lead recorded at 16:30 in November replays at 16:30 in July, not at 17:30, after closing.
    """
    local = at.astimezone(zone).replace(tzinfo=None) + weeks
    return local.replace(tzinfo=zone).astimezone(UTC)


class _ScenarioDriver(_Driver):
    """The demo's outside world, with the scenario's arrivals, team and habits."""

    def __init__(
        self,
        *args: Any,
        scenario: Scenario,
        habits: Habits,
        recorded: list[tuple[datetime, str, dict[str, Any]]],
        begin: datetime,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.scenario = scenario
        self.habits = habits
        self.recorded = recorded
        self.begin = begin
        self.given = {rep: given_habit(h) for rep, h in scenario.spec.behaviour.reps.items()}
        for rep, added in scenario.spec.team.add.items():
            if added.habit is not None:
                self.given[rep] = given_habit(added.habit)
        self.replayed: dict[int, dict[str, Any]] = {}  # recorded arrivals' data, by number
        self.free_at: dict[str, datetime] = {}  # a rep working one task at a time: free then
        self.like = {rep: a.like for rep, a in scenario.spec.team.add.items() if a.like}
        self.leave = {
            rep: [
                (_midnight(p.from_, self.zone), _midnight(p.to + timedelta(days=1), self.zone))
                for p in periods
            ]
            for rep, periods in scenario.spec.team.leave.items()
        }
        self.watch = EngineWatch(self.env.client, self.processes, self.sessions)

    @property
    def zone(self) -> ZoneInfo:
        first = next(iter(self.processes.values()))
        return ZoneInfo(first.calendar.timezone)

    async def run(self) -> None:
        self.start = self.begin - timedelta(weeks=self.scenario.spec.warm_up)
        await self.advance(self.start)
        stop_new = self.begin + timedelta(weeks=self.scenario.spec.weeks)
        self.plan_arrivals(self.start, stop_new)
        for rep, periods in self.leave.items():
            for away, back in periods:
                self.schedule(max(away, self.start), "away", rep=rep, active=False)
                self.schedule(back, "away", rep=rep, active=True)
        await self.work_until(self.ends)

    async def work_until(self, end: datetime) -> None:
        """Let time run to `end`, jumping from one moment something can happen to the next.

        After the driver acts, time runs on for `SETTLE` while the engine works it through, and
        the driver looks for the tasks that opened; otherwise it sleeps to its next planned
        action or to the engine's next timer that may open or hand over a task (`EngineWatch`).
        """
        clock = ServerClock(self.env)
        now = await clock.read()
        while True:
            acted = False
            while self.queue and self.queue[0].at <= now:
                due = [heapq.heappop(self.queue)]
                while self.queue and self.queue[0].at <= now:
                    due.append(heapq.heappop(self.queue))
                # A moment's actions go together: each waits for its instance's workflow task,
                # which runs the activities it causes (`duly.local_activities`)
                await asyncio.gather(*(self.perform(action) for action in due))
                acted = True
            self.report(now, end)
            if now >= end:
                break
            target = min(self.queue[0].at if self.queue else end, end)
            if acted:
                target = min(target, now + SETTLE)
            else:
                moment = await self.watch.next_moment(now)
                target = target if moment is None else min(target, moment)
            now = await clock.sleep(max(target - now, timedelta(milliseconds=1)))
            await self.look_for_tasks(now)

    async def send(self, event_type: str, data: dict[str, Any], tag: str) -> None:
        event = EventInput(id=f"demo-{self.seed}-{tag}-{event_type}", type=event_type, data=data)
        touched = await send_event(
            self.env.client, self.definitions, event, task_queue=self.task_queue
        )
        self.events += 1
        self.watch.touch(touched)

    def plan_arrivals(self, start: datetime, stop: datetime) -> None:
        counter = 0
        for at, name, data in self.recorded:
            if start <= at < stop:
                counter += 1
                self.schedule(at, "recorded", process=name, data=data, number=counter)
        for name, arrivals in self.scenario.spec.arrivals.items():
            if arrivals.per_day is None:
                continue
            for at in _planned(self.processes[name], arrivals, start, stop, self.seed):
                counter += 1
                self.schedule(at, "arrive", process=name, number=counter)

    def arrival_data(self, process: str, number: int) -> tuple[str, dict[str, Any]]:
        event, data = super().arrival_data(process, number)
        if number in self.replayed:  # as recorded, less the engine's note of its last task
            data = {
                k: v for k, v in copy.deepcopy(self.replayed[number]).items() if k != "last_task"
            }
        return event, data

    async def arrive(self, process: str, number: int, at: datetime) -> None:
        if process in SHIPPED:  # the demo knows their data and the CRM's later events
            await super().arrive(process, number, at)
            return
        compiled = self.processes[process]
        if compiled.spec.trigger is not None:
            data = _key_data(compiled.spec.trigger.key, f"{process}-{number}")
            await self.send(compiled.spec.trigger.types[0], data, f"{process}/{number}/start")

    async def perform(self, action: Any) -> None:
        if action.kind == "complete":  # "<instance>/<step>/<visit>"
            self.watch.touch([action.args["task"].rsplit("/", 2)[0]])
        if action.kind == "away":
            self.set_active(action.args["rep"], action.args["active"])
        elif action.kind == "recorded" and action.args["process"] in SHIPPED:
            # At the recorded time, with the recorded data (owner, lead source, quote amount,
            # case priority), and the demo's outside world's later events
            self.replayed[action.args["number"]] = action.args["data"]
            await super().arrive(action.args["process"], action.args["number"], action.at)
        elif action.kind == "recorded":
            data = action.args["data"]
            process = self.processes[action.args["process"]]
            tag = f"{action.args['process']}/{action.args['number']}/start"
            if process.spec.trigger is not None:
                await self.send(process.spec.trigger.types[0], data, tag)
        else:
            await super().perform(action)

    def set_active(self, rep: str, active: bool) -> None:
        with write_session(self.sessions) as session:
            user = session.get(User, rep)
            if user is not None:
                user.active = active
                session.add(user)

    def habit(self, rep: str, process: str, step: str) -> Habit | None:
        if rep in self.given:
            return self.given[rep]
        return self.habits.for_task(self.like.get(rep, rep), process, step)

    def completion_time(
        self, task: Task, key: str, data: dict[str, Any], now: datetime, *, handed_over: bool
    ) -> datetime:
        habit = self.habit(task.assignee or "", task.process, task.step)
        if habit is None:  # no fact about this step at all: the demo's profile
            when = super().completion_time(task, key, data, now, handed_over=handed_over)
        else:
            calendar = self.processes[task.process].calendar
            opened = max(task.opened_at, self.start)
            start = max(opened, now) if handed_over else opened
            rng = _rng(self.seed, "delay", task.process, key, task.step, task.visit, task.assignee)
            seconds = habit.draw_seconds(rng, self.scenario.spec.behaviour.speed)
            rep = task.assignee or ""
            if self.scenario.spec.behaviour.one_at_a_time:
                start = max(start, self.free_at.get(rep, start))
            when = business_time.add_business_seconds(calendar, start, seconds)
            if self.scenario.spec.behaviour.one_at_a_time:
                self.free_at[rep] = when
        return max(self.in_hours(task.assignee or "", self.after_leave(task.assignee, when)), now)

    def after_leave(self, rep: str | None, when: datetime) -> datetime:
        for away, back in self.leave.get(rep or "", []):
            if away <= when < back:
                return back + timedelta(hours=9)  # their first morning back
        return when

    def in_hours(self, rep: str, when: datetime) -> datetime:
        """Move a moment outside the rep's own hours to the start of their next hours."""
        hours = self.scenario.spec.team.hours.get(rep)
        if hours is None:
            return when
        lo, hi = (datetime.strptime(part, "%H:%M").time() for part in hours.split("-"))
        local = when.astimezone(self.zone)
        if lo <= local.time() < hi:
            return when
        day = local.date() + timedelta(days=1 if local.time() >= hi else 0)
        return datetime.combine(day, lo, self.zone).astimezone(UTC)

    def fill_in(self, task: Task, key: str, outcome: str, rng: Any, at: datetime) -> dict[str, Any]:
        """The demo's budget and timeline, then every other field the outcome requires.

        A value the instance's data already holds (a recorded arrival's, as its rep entered
        it) is given again when it fits the field; otherwise one of its type (`_drawn`). A
        completion without them would be refused, and its task stay open to the end.
        """
        fields = super().fill_in(task, key, outcome, rng, at)
        step = self.processes[task.process].spec.steps.get(task.step)
        needed = {
            name: spec
            for name, spec in (step.fields if isinstance(step, TaskStep) else {}).items()
            if name not in fields and spec.default is None and spec.required_for(outcome)
        }
        if not needed:
            return fields
        with self.sessions() as session:
            instance = session.get(Instance, task.instance_id)
        data = dict(instance.data) if instance is not None else {}
        draw = _rng(self.seed, "fields", task.process, key, task.step, task.visit)
        local = at.astimezone(ZoneInfo(self.processes[task.process].calendar.timezone))
        for name, spec in needed.items():
            value = data.get(name)
            if value is None or field_value_problem(name, spec, value) is not None:
                value = _drawn(spec, draw, local)
            fields[name] = value
        return fields

    def follow_up(self, task: Task, key: str, outcome: str, rng: Any, done: datetime) -> None:
        super().follow_up(task, key, outcome, rng, done)
        self.watch.completed(task.instance_id, task.process, task.step, outcome, done)

    def choose_outcome(self, task: Task, rng: Any) -> str:
        habit = self.habit(task.assignee or "", task.process, task.step)
        if habit is None:
            return super().choose_outcome(task, rng)
        return habit.draw_outcome(rng, task.outcomes)


def _drawn(spec: FieldSpec, rng: random.Random, at: datetime) -> Any:
    """A value of a field's type, for a rep whose instance data holds none.

    One of a choice's options, a number drawn as the demo's budgets are (log-normal about
    30,000), a whole number from 1 to 10, yes or no, the day or moment of the completion, or a
    line of text.
    """
    if spec.type == "choice":
        return rng.choice(spec.options or [""])
    if spec.type == "number":
        return float(round(rng.lognormvariate(math.log(30000), 0.7), -2))
    if spec.type == "integer":
        return rng.randint(1, 10)
    if spec.type == "boolean":
        return rng.random() < 0.5
    if spec.type == "date":
        return at.date().isoformat()
    if spec.type == "datetime":
        return at.isoformat()
    return "filled in by a simulated rep"


_KEY = re.compile(r"\{\{\s*([A-Za-z_]\w*)((?:\.[A-Za-z_]\w*)*)\s*\}\}")


def _key_data(template: str, value: str) -> dict[str, Any]:
    """Instance data that renders a `{{ a.b }}` business-key template to `value`."""
    match = _KEY.search(template)
    if match is None:
        return {"id": value}
    names = [match.group(1), *filter(None, match.group(2).split("."))]
    data: dict[str, Any] = {names[-1]: value}
    for name in reversed(names[:-1]):
        data = {name: data}
    return data


def given_habit(habit: HabitSpec) -> Habit:
    """The habit a scenario gives a rep: exponential with a mean, or log-normal by quantiles."""
    if habit.mean is not None:
        return Habit.exponential(business_seconds(habit.mean), dict(habit.outcomes))
    assert habit.p50 is not None and habit.p90 is not None  # checked by the scenario model
    return Habit.from_quantiles(
        business_seconds(habit.p50), business_seconds(habit.p90), dict(habit.outcomes)
    )


QUIET = TelemetryConfig(
    logging=LoggingConfig(filter=TelemetryFilter(core_level="ERROR", other_level="ERROR"))
)
"""How a run's SDK core logs: errors only (its warnings went to stdout, into CSV)."""


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, datetime.min.time(), zone).astimezone(UTC)


def _planned(
    process: CompiledProcess, arrivals: Arrivals, start: datetime, stop: datetime, seed: int
) -> list[datetime]:
    """Poisson arrivals per open day, shaped over the week and the hours of the day."""
    zone = ZoneInfo(process.calendar.timezone)
    weekday_names = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
    out: list[datetime] = []
    day = start.astimezone(zone).date()
    while datetime.combine(day, datetime.min.time(), zone) < stop:
        ranges = process.calendar.open_ranges(day)
        rng = _rng(seed, "arrivals", process.name, day.isoformat())
        weight = arrivals.weekdays.get(weekday_names[day.weekday()], 1.0)  # type: ignore[call-overload]
        minutes = [m for lo, hi in ranges for m in range(lo, hi)]
        shape = [arrivals.hours.get(m // 60, 1.0) for m in minutes]
        mean = (arrivals.per_day or 0.0) * weight
        count = _poisson(rng, mean) if minutes and sum(shape) > 0 else 0
        for minute in rng.choices(minutes, shape, k=count) if count else []:
            local = datetime.combine(day, datetime.min.time(), zone) + timedelta(
                minutes=minute, seconds=rng.randrange(60)
            )
            at = local.astimezone(UTC)
            if start <= at < stop:
                out.append(at)
        day += timedelta(days=1)
    return out


async def run_once(
    scenario: Scenario,
    habits: Habits,
    recorded: list[tuple[datetime, str, dict[str, Any]]],
    *,
    seed: int,
    start: date,
) -> RunMeasures:
    """One run of a scenario in a throw-away store; its weekly measures."""
    from duly.worker import prepare_database

    definitions: Definitions = scenario.definitions
    first = next(iter(definitions.processes.values()))
    begin = _midnight(start, ZoneInfo(first.calendar.timezone))
    with tempfile.TemporaryDirectory(prefix="duly-simulate-") as folder:
        settings = Settings(data_dir=Path(folder), definitions=Path(folder) / "definitions")
        fresh = make_engine(settings.database_url)
        create_all(fresh)  # the migrations' schema at once: quicker than replaying them
        fresh.dispose()
        engine = prepare_database(settings, definitions)
        without_channels(engine)
        try:
            async with skipping_worker(
                sealed(settings), telemetry=QUIET, name="simulate", handlers=SIMULATED_HANDLERS
            ) as run:
                driver = _ScenarioDriver(
                    run.env,
                    definitions,
                    dict(definitions.processes),
                    engine,
                    run.task_queue,
                    ends=begin + timedelta(weeks=scenario.spec.weeks) + DRAIN,
                    weeks=scenario.spec.warm_up + scenario.spec.weeks,
                    seed=seed,
                    scale=1.0,
                    scenario=scenario,
                    habits=habits,
                    recorded=recorded,
                    begin=begin,
                )
                try:
                    await driver.run()
                finally:
                    driver.close()
            return measure_run(engine, definitions, begin, scenario.spec.weeks, seed=seed)
        finally:
            engine.dispose()
