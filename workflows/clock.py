"""SLA clocks as pure arithmetic: clock state and an instant in, SLA events and the next rung out.

ProcessWorkflow keeps the timers, the waits and the activity calls; when a clock is due, what a
pause or a new target does to it and which rung of its ladder comes next are decided here, from
the definition, the instance data and the instants the workflow passes in (`workflow.now()`, or
when the event behind a change happened). Nothing here reads a clock, does I/O or imports
temporalio, so it is tested on its own (tests/test_clock.py) and the sandbox passes it through
instead of importing it again for every instance.

Time counted is kept in `ClockState.counted_seconds` (business seconds for a business-time SLA,
wall seconds otherwise) up to `running_since`, so a pause and a change of target both keep what
has elapsed. A rung at share `s` of the SLA fires when `s` of its total has been counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from activities.messages import SlaEvent, SlaEventKind
from duly.language import business_time, expressions
from duly.language.business_time import BusinessCalendar
from duly.language.durations import Duration
from duly.language.model import ProcessSpec, Rung, Targets, TaskStep
from workflows.messages import ClockState, NextRung

AlertLevel = Literal["warning", "breach", "escalation"]
LATE = "late-arriving: the event came after this instant"
STEP_CLOCK = "step:"
"""A step's own clock is named `step:<step id>`; process-level clocks by their own names."""


@dataclass
class Change:
    """What a change to the clocks produced, for the workflow to keep.

    Attributes:
        events: SLA events for the instance's audit trail, in the order they happened.
        no_target: Clocks that could not start because their `by:` value picked no target,
            each as a line for the instance's history.
    """

    events: list[SlaEvent] = field(default_factory=list)
    no_target: list[str] = field(default_factory=list)


@dataclass
class Fired:
    """A moment of a ladder that came: the clock's breach, or one of its rungs.

    Attributes:
        clock: The clock it belongs to (already updated: breached, or a rung further).
        rung: The rung whose actions the workflow now runs; None for the breach itself.
        level: How the alerts of the rung read: before 100% a warning, at 100% the breach,
            after it an escalation.
        events: The SLA event that records it.
    """

    clock: ClockState
    rung: Rung | None
    level: AlertLevel
    events: list[SlaEvent]


def is_late(clock: ClockState, at: datetime | None) -> bool:
    """Whether an instant of a clock had passed before duly learnt of the event behind it."""
    return at is not None and clock.received_at is not None and at <= clock.received_at


def target(within: Duration | Targets, data: dict[str, Any]) -> tuple[str, Duration | None]:
    """The `by:` value the instance data gives and the duration it picks ("" for a fixed one)."""
    if isinstance(within, Duration):
        return "", within
    try:
        value = expressions.render(within.by, data).strip()
    except expressions.ExpressionError:
        value = ""
    return value, within.targets.get(value, within.default)


class SlaClocks:
    """The SLA clocks of one instance, over the definition that declares them.

    Every change is made in place on the `ClockState`s in `clocks` (the instance state's own
    dict, so queries and continue-as-new carry them) and returned as a `Change`.
    """

    def __init__(
        self, spec: ProcessSpec, calendar: BusinessCalendar, clocks: dict[str, ClockState]
    ) -> None:
        """Watch the clocks in `clocks`, declared by `spec`, counting on `calendar`."""
        self.spec = spec
        self.calendar = calendar
        self.clocks = clocks

    # --- what the definition says about a clock ------------------------------------------

    def within_of(self, clock: ClockState) -> Duration | Targets | None:
        """The time the clock allows, as declared (None if the definition has no such clock)."""
        if clock.name.startswith(STEP_CLOCK):
            step = self.spec.steps.get(clock.name.removeprefix(STEP_CLOCK))
            return step.sla.within if isinstance(step, TaskStep) and step.sla else None
        spec = self.spec.clocks.get(clock.name)
        return spec.within if spec else None

    def ladder_of(self, clock: ClockState) -> list[Rung]:
        """The clock's escalation ladder, in the order it was declared."""
        if clock.name.startswith(STEP_CLOCK):
            step = self.spec.steps.get(clock.name.removeprefix(STEP_CLOCK))
            return step.sla.escalate if isinstance(step, TaskStep) and step.sla else []
        spec = self.spec.clocks.get(clock.name)
        return spec.escalate if spec else []

    # --- changes -------------------------------------------------------------------------

    def start_step(
        self,
        step_id: str,
        step: TaskStep,
        visit: int,
        *,
        at: datetime,
        now: datetime,
        data: dict[str, Any],
    ) -> tuple[ClockState | None, Change]:
        """A task's own SLA clock, counting from `at`; None when the step has no SLA (or target).

        The clock is not added to `clocks`: the workflow hands it over once the task exists, so
        a rung never fires about a task not yet open.
        """
        change = Change()
        if step.sla is None:
            return None, change
        name = f"{STEP_CLOCK}{step_id}"
        return self._new(name, step.sla.within, at, now, step_id, visit, data, change), change

    def at_point(
        self, point: str, *, at: datetime, now: datetime, step: str | None, data: dict[str, Any]
    ) -> Change:
        """A step was entered or an event arrived: start, stop, pause or resume process clocks.

        Args:
            point: The step id entered, `start`, or the event type that arrived.
            at: When it happened (earlier than `now` for an event that arrived late).
            now: The workflow's time.
            step: The step the instance is at, for the clocks it starts.
            data: The instance data, whose `by:` values pick targets.

        Returns:
            The SLA events, and the clocks that could not start for want of a target.
        """
        change = Change()
        for name, spec in self.spec.clocks.items():
            clock = self.clocks.get(name)
            if clock is None:
                if spec.starts == point:
                    clock = self._new(name, spec.within, at, now, step, 0, data, change)
                    if clock is not None:
                        self.clocks[name] = clock
                continue
            if clock.status == "stopped":
                continue
            if point in spec.stops:
                stopped_at = max(at, clock.running_since or clock.started_at)
                change.events += self.stop(clock, stopped_at, now=now).events
            elif point in spec.pauses_in and clock.status == "running":
                self._count(clock, at)
                clock.status, clock.running_since, clock.due_at = "paused", None, None
                clock.paused_since = at
                change.events.append(_event(clock, "pause", at))
            elif (
                point in self.spec.steps
                and point not in spec.pauses_in
                and clock.status == "paused"
            ):
                clock.status, clock.running_since = "running", at
                if clock.paused_since is not None:
                    clock.pauses.append((clock.paused_since, at))
                    clock.paused_since = None
                clock.due_at = self._due(clock)
                change.events.append(_event(clock, "resume", at, clock.due_at))
        return change

    def stop(
        self, clock: ClockState, at: datetime, *, now: datetime, cancelled: bool = False
    ) -> Change:
        """Stop a clock at `at`: met or breached.

        With `cancelled` (its task ended by an event) it is not applicable (`met` None),
        unless its deadline had already passed.
        """
        if clock.status == "running":
            self._count(clock, at)
        clock.status, clock.running_since, clock.stopped_at = "stopped", None, at
        clock.met = clock.breached_at is None and clock.counted_seconds <= clock.total_seconds
        if not clock.met and at < now and clock.counted_seconds <= clock.total_seconds:
            # stopped at an earlier instant (work logged in the CRM in time, its event came
            # after the deadline): met, though the breach was announced when it seemed due
            clock.met, clock.breached_at = True, None
        if not clock.met and clock.breached_at is None:
            clock.breached_at = clock.due_at
        if cancelled and clock.met:
            clock.met = None
        verdict = {True: "met", False: "breached", None: "not applicable"}[clock.met]
        return Change(events=[_event(clock, "stop", at, clock.due_at, verdict)])

    def retarget(self, *, now: datetime, data: dict[str, Any]) -> Change:
        """Data behind a `by:` target changed: keep the time counted, recompute due and rungs.

        The new total is what the new target allows from the clock's start, so a priority
        raised late can leave the clock already due.
        """
        change = Change()
        for clock in self.clocks.values():
            within = self.within_of(clock)
            if clock.status == "stopped" or not isinstance(within, Targets):
                continue
            value, duration = target(within, data)
            if duration is None or value == clock.target:
                continue
            if clock.status == "running":
                self._count(clock, now)
            if (duration.kind != "wall") != clock.business:
                self._recount(clock, business=duration.kind != "wall", now=now)
            nominal_due = business_time.add(self.calendar, clock.started_at, duration)
            clock.total_seconds = (
                business_time.elapsed(self.calendar, clock.started_at, nominal_due).total_seconds()
                if clock.business
                else float(duration.seconds)
            )
            clock.target = value
            if clock.status == "running":
                clock.due_at = self._due(clock)
            change.events.append(
                _event(clock, "retarget", now, clock.due_at, f"within {duration} ({value})")
            )
        return change

    # --- the ladder ----------------------------------------------------------------------

    def next_point(self) -> NextRung | None:
        """The earliest pending moment of any running clock: a rung, or the breach itself."""
        points: list[NextRung] = []
        for clock in self.clocks.values():
            if clock.status != "running":
                continue
            ladder = self.ladder_of(clock)
            if clock.breached_at is None:
                points.append(
                    NextRung(
                        clock=clock.name, rung=-1, at=self._at_share(clock, 1.0), action="breach"
                    )
                )
            if clock.rungs_done < len(ladder):
                rung = ladder[clock.rungs_done]
                at = self._at_share(clock, rung.at)
                points.append(
                    NextRung(clock=clock.name, rung=clock.rungs_done, at=at, action=rung.summary)
                )
        # the breach is recorded before a 100% rung that fires at the same instant
        return min(points, key=lambda p: (p.at, p.rung), default=None)

    def fire(self, point: NextRung, *, now: datetime) -> Fired:
        """The moment `point` (from `next_point`) came at `now`: record it and move on.

        A moment already past when duly learnt of the event behind the clock is recorded at
        its true instant, marked late-arriving.
        """
        clock = self.clocks[point.clock]
        late = is_late(clock, point.at)
        when = point.at if late else now
        if point.rung < 0:
            clock.breached_at = point.at
            event = _event(clock, "breach", when, clock.due_at, LATE if late else "")
            return Fired(clock=clock, rung=None, level="breach", events=[event])
        rung = self.ladder_of(clock)[point.rung]
        clock.rungs_done = point.rung + 1
        level: AlertLevel = "warning" if rung.at < 1 else "breach" if rung.at == 1 else "escalation"
        event = _event(
            clock,
            "warning" if level == "warning" else "escalation",
            when,
            clock.due_at,
            f"rung {point.rung + 1}: {point.action}" + (f" ({LATE})" if late else ""),
        )
        return Fired(clock=clock, rung=rung, level=level, events=[event])

    # --- arithmetic ----------------------------------------------------------------------

    def _new(
        self,
        name: str,
        within: Duration | Targets,
        at: datetime,
        now: datetime,
        step: str | None,
        visit: int,
        data: dict[str, Any],
        change: Change,
    ) -> ClockState | None:
        value, duration = target(within, data)
        if duration is None:
            change.no_target.append(f"clock {name}: no target for '{value}'")
            return None
        due = business_time.add(self.calendar, at, duration)
        business = duration.kind != "wall"
        total = (
            business_time.elapsed(self.calendar, at, due).total_seconds()
            if business
            else float(duration.seconds)
        )
        clock = ClockState(
            name=name,
            step=step,
            visit=visit,
            business=business,
            total_seconds=total,
            running_since=at,
            started_at=at,
            due_at=due,
            target=value,
            received_at=now if at < now else None,
        )
        detail = f"within {duration}" + (f" ({value})" if value else "")
        change.events.append(_event(clock, "start", at, due, detail))
        return clock

    def _count(self, clock: ClockState, now: datetime) -> None:
        """Fold the running stretch into the time counted so far."""
        assert clock.running_since is not None  # called only while the clock runs
        clock.counted_seconds += self._length(clock, clock.running_since, now)
        clock.running_since = now

    def _recount(self, clock: ClockState, *, business: bool, now: datetime) -> None:
        """Count the other kind of time from now on (a `by:` map mixing wall and business).

        What the clock ran so far is recounted in that kind: from its start, less its pauses.
        """
        clock.business = business
        until = (clock.paused_since or now) if clock.status == "paused" else now
        ran = self._length(clock, clock.started_at, until)
        ran -= sum(self._length(clock, start, end) for start, end in clock.pauses)
        clock.counted_seconds = max(ran, 0.0)

    def _length(self, clock: ClockState, start: datetime, end: datetime) -> float:
        """Seconds of the clock's kind of time from `start` to `end`."""
        if clock.business:
            return business_time.elapsed(self.calendar, start, end).total_seconds()
        return (end - start).total_seconds()

    def _at_share(self, clock: ClockState, share: float) -> datetime:
        """When `share` of the clock's total will have been counted (while it runs)."""
        assert clock.running_since is not None
        if share == 1 and clock.due_at is not None:
            return clock.due_at  # "2 business days" is due at the same time of day, not at close
        left = max(share * clock.total_seconds - clock.counted_seconds, 0.0)
        if clock.business:
            return business_time.add_business_seconds(self.calendar, clock.running_since, left)
        return clock.running_since + timedelta(seconds=left)

    def _due(self, clock: ClockState) -> datetime:
        """The due time after a pause or a new target: the rest of the total from now on."""
        clock.due_at = None
        return self._at_share(clock, 1.0)


def _event(
    clock: ClockState,
    kind: SlaEventKind,
    at: datetime,
    due: datetime | None = None,
    detail: str = "",
) -> SlaEvent:
    return SlaEvent(
        clock=clock.name,
        kind=kind,
        at=at,
        step=clock.step,
        visit=clock.visit or None,
        due_at=due,
        detail=detail,
    )
