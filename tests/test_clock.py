"""SLA clocks as pure arithmetic (workflows/clock.py), checked against business time.

No Temporal server here: a clock is driven the way ProcessWorkflow's watcher drives it (fire the
next point once its instant has come), with instants chosen by the test. The properties: the due
time is the start plus the SLA in business time; a pause moves it by exactly the open time the
pause covered; a new target counts from the clock's start; each rung fires once, in order, and
nothing fires after a stop.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duly.language import business_time
from duly.language.business_time import BusinessCalendar
from duly.language.durations import parse_duration
from duly.language.model import ProcessSpec, TaskStep
from workflows.clock import LATE, SlaClocks, is_late, target
from workflows.messages import ClockState

# New York office hours, Independence Day (observed) closed; a Berlin desk with a lunch break
# (its clocks change in March and October); a desk open around the clock.
NEW_YORK = BusinessCalendar(
    name="us-east",
    timezone="America/New_York",
    weekly=[[(540, 1020)]] * 5 + [[], []],
    closed_dates=[date(2026, 7, 3)],
)
BERLIN = BusinessCalendar(
    name="eu-berlin",
    timezone="Europe/Berlin",
    weekly=[[(480, 720), (780, 1080)]] * 5 + [[(600, 840)], []],
)
ALWAYS = BusinessCalendar(name="always", timezone="UTC", weekly=[[(0, 1440)]] * 7)
CALENDARS = [NEW_YORK, BERLIN, ALWAYS]

MONDAY_10 = datetime(2026, 6, 15, 14, 0, tzinfo=UTC)  # 10:00 in New York
FRIDAY_16 = datetime(2026, 6, 19, 20, 0, tzinfo=UTC)  # 16:00 in New York


def process(
    within: str | dict[str, str] = "8 business hours",
    escalate: list[dict[str, Any]] | None = None,
    clocks: dict[str, Any] | None = None,
) -> ProcessSpec:
    """A process whose `call` task has the SLA `within` and the ladder `escalate`."""
    sla = {"within": within, "escalate": escalate or []}
    return _process(json.dumps({"sla": sla, "clocks": clocks or {}}, sort_keys=True))


@functools.cache
def _process(given: str) -> ProcessSpec:
    # validated once per shape: property tests build the same few processes many times
    return ProcessSpec.model_validate(
        {
            "process": "clocked",
            "title": "Clocked",
            "version": 1,
            "calendar": "us-east",
            "start": "call",
            "clocks": json.loads(given)["clocks"],
            "steps": {
                "call": {
                    "kind": "task",
                    "title": "Call",
                    "sla": json.loads(given)["sla"],
                    "outcomes": {"reached": "waiting", "lost": "done"},
                },
                "waiting": {"kind": "task", "title": "Wait", "outcomes": {"back": "call"}},
                "free": {"kind": "task", "title": "No SLA", "outcomes": {"done": "done"}},
                "done": {"kind": "end"},
            },
        }
    )


def call_step(spec: ProcessSpec) -> TaskStep:
    step = spec.steps["call"]
    assert isinstance(step, TaskStep)
    return step


def started(
    spec: ProcessSpec,
    calendar: BusinessCalendar = NEW_YORK,
    at: datetime = MONDAY_10,
    data: dict[str, Any] | None = None,
) -> tuple[SlaClocks, ClockState]:
    """The `call` step's clock, started at `at` and watched."""
    clocks = SlaClocks(spec, calendar, {})
    clock, change = clocks.start_step("call", call_step(spec), 1, at=at, now=at, data=data or {})
    assert clock is not None and not change.no_target
    clocks.clocks[clock.name] = clock
    return clocks, clock


def drive(clocks: SlaClocks, until: datetime, now: datetime) -> list[tuple[str, int, datetime]]:
    """Fire every point due by `until` as the watcher would; (clock, rung, instant) in order."""
    fired = []
    while (point := clocks.next_point()) is not None and point.at <= until:
        now = max(now, point.at)
        clocks.fire(point, now=now)
        fired.append((point.clock, point.rung, point.at))
    return fired


# --- starting a clock ----------------------------------------------------------------------


def test_a_step_clock_is_due_its_sla_after_the_task_opens() -> None:
    spec = process("2 business days")
    clocks = SlaClocks(spec, NEW_YORK, {})
    clock, change = clocks.start_step(
        "call", call_step(spec), 3, at=FRIDAY_16, now=FRIDAY_16, data={}
    )
    assert clock is not None
    assert clock.name == "step:call" and clock.step == "call" and clock.visit == 3
    assert clock.due_at == datetime(2026, 6, 23, 20, 0, tzinfo=UTC)  # Tuesday 16:00
    assert clock.total_seconds == 16 * 3600 and clock.business
    assert clock.received_at is None  # it started when duly learnt of it
    assert [(e.kind, e.at, e.due_at, e.detail, e.visit) for e in change.events] == [
        ("start", FRIDAY_16, clock.due_at, "within 2 business days", 3)
    ]
    assert clocks.clocks == {}  # the workflow watches it once the task exists


def test_a_clock_started_by_a_late_event_remembers_when_duly_learnt_of_it() -> None:
    spec = process("30 minutes", escalate=[{"at": "50%", "notify": "assignee"}])
    clocks = SlaClocks(spec, NEW_YORK, {})
    happened = MONDAY_10 - timedelta(hours=1)
    clock, _ = clocks.start_step("call", call_step(spec), 1, at=happened, now=MONDAY_10, data={})
    assert clock is not None and clock.received_at == MONDAY_10 and not clock.business
    clocks.clocks[clock.name] = clock
    warning = clocks.next_point()
    assert warning is not None and warning.at == happened + timedelta(minutes=15)
    fired = clocks.fire(warning, now=MONDAY_10)
    # recorded at its true instant, marked late-arriving
    assert [(e.kind, e.at) for e in fired.events] == [("warning", warning.at)]
    assert fired.events[0].detail == f"rung 1: notify assignee ({LATE})"
    breach = clocks.next_point()
    assert breach is not None and breach.rung == -1
    fired = clocks.fire(breach, now=MONDAY_10)
    assert fired.rung is None and fired.level == "breach"
    assert [(e.kind, e.at, e.detail) for e in fired.events] == [("breach", breach.at, LATE)]
    assert is_late(clock, clock.breached_at) and not is_late(clock, MONDAY_10 + timedelta(1))


def test_a_step_without_an_sla_has_no_clock() -> None:
    spec = process()
    step = spec.steps["free"]
    assert isinstance(step, TaskStep)
    clock, change = SlaClocks(spec, NEW_YORK, {}).start_step(
        "free", step, 1, at=MONDAY_10, now=MONDAY_10, data={}
    )
    assert clock is None and not change.events and not change.no_target


def test_the_instance_data_picks_the_target() -> None:
    spec = process({"by": "{{ case.priority }}", "urgent": "4 business hours", "normal": "2 days"})
    _, urgent = started(spec, data={"case": {"priority": " urgent "}})
    assert urgent.target == "urgent" and urgent.business
    assert urgent.due_at == MONDAY_10 + timedelta(hours=4)
    _, normal = started(spec, data={"case": {"priority": "normal"}})
    assert normal.target == "normal" and not normal.business
    assert normal.due_at == MONDAY_10 + timedelta(days=2)


def test_no_target_for_the_value_means_no_clock_and_a_reason() -> None:
    spec = process({"by": "{{ case.priority }}", "urgent": "4 business hours"})
    clock, change = SlaClocks(spec, NEW_YORK, {}).start_step(
        "call", call_step(spec), 1, at=MONDAY_10, now=MONDAY_10, data={"case": {"priority": "low"}}
    )
    assert clock is None and not change.events
    assert change.no_target == ["clock step:call: no target for 'low'"]


def test_a_by_that_fails_to_render_falls_back_to_the_default() -> None:
    assert target(parse_duration("1 hour"), {}) == ("", parse_duration("1 hour"))
    spec = process({"by": "{{ 1 / 0 }}", "urgent": "1 business hour", "default": "3 hours"})
    _, clock = started(spec)
    assert clock.target == "" and clock.due_at == MONDAY_10 + timedelta(hours=3)


# --- process-level clocks: start, pause, resume, stop ---------------------------------------

RESOLUTION = {
    "resolution": {
        "starts": "start",
        "stops": ["done", "case.closed"],
        "pauses_in": ["waiting"],
        "within": "8 business hours",
        "escalate": [{"at": "100%", "notify": "manager"}],
    }
}


def test_a_process_clock_starts_pauses_resumes_and_stops_at_its_points() -> None:
    clocks = SlaClocks(process(clocks=RESOLUTION), NEW_YORK, {})
    assert not clocks.at_point("call", at=MONDAY_10, now=MONDAY_10, step="call", data={}).events
    change = clocks.at_point("start", at=MONDAY_10, now=MONDAY_10, step=None, data={})
    clock = clocks.clocks["resolution"]
    assert [(e.kind, e.due_at) for e in change.events] == [("start", MONDAY_10 + timedelta(1))]
    assert clock.visit == 0 and change.events[0].visit is None
    # two business hours later the instance waits on the customer until Wednesday 11:00
    paused = MONDAY_10 + timedelta(hours=2)
    change = clocks.at_point("waiting", at=paused, now=paused, step="waiting", data={})
    assert [(e.kind, e.at) for e in change.events] == [("pause", paused)]
    assert clock.status == "paused" and clock.due_at is None and clock.counted_seconds == 7200
    assert clocks.next_point() is None  # a paused clock never fires
    again = clocks.at_point("waiting", at=paused, now=paused, step="waiting", data={})
    assert not again.events  # already paused
    resumed = MONDAY_10 + timedelta(days=2, hours=1)
    change = clocks.at_point("call", at=resumed, now=resumed, step="call", data={})
    # six business hours left: Wednesday 11:00 + 6 h = 17:00
    assert [(e.kind, e.due_at) for e in change.events] == [("resume", resumed + timedelta(hours=6))]
    assert clocks.clocks["resolution"].status == "running" and clock.running_since == resumed
    change = clocks.at_point(
        "case.closed", at=resumed + timedelta(hours=1), now=resumed, step=None, data={}
    )
    assert [(e.kind, e.detail) for e in change.events] == [("stop", "met")]
    assert clock.met is True and clock.counted_seconds == 3 * 3600
    assert not clocks.at_point("call", at=resumed, now=resumed, step="call", data={}).events


def test_a_stop_that_happened_before_the_clock_resumed_stops_it_at_the_resume() -> None:
    clocks = SlaClocks(process(clocks=RESOLUTION), NEW_YORK, {})
    clocks.at_point("start", at=MONDAY_10, now=MONDAY_10, step=None, data={})
    clock = clocks.clocks["resolution"]
    early = MONDAY_10 - timedelta(hours=1)
    change = clocks.at_point("done", at=early, now=MONDAY_10, step="done", data={})
    assert clock.stopped_at == MONDAY_10 and change.events[0].at == MONDAY_10


def test_a_paused_clock_stops_without_counting_the_pause() -> None:
    clocks = SlaClocks(process(clocks=RESOLUTION), NEW_YORK, {})
    clocks.at_point("start", at=MONDAY_10, now=MONDAY_10, step=None, data={})
    clocks.at_point("waiting", at=MONDAY_10 + timedelta(hours=1), now=MONDAY_10, step=None, data={})
    later = MONDAY_10 + timedelta(days=5)
    clocks.at_point("done", at=later, now=later, step="done", data={})
    clock = clocks.clocks["resolution"]
    assert clock.met is True and clock.counted_seconds == 3600


def test_a_clock_with_no_target_does_not_start() -> None:
    spec = process(
        clocks={"first": {"stops": ["done"], "within": {"by": "{{ tier }}", "gold": "1 hour"}}}
    )
    clocks = SlaClocks(spec, NEW_YORK, {})
    change = clocks.at_point("start", at=MONDAY_10, now=MONDAY_10, step=None, data={})
    assert clocks.clocks == {} and change.no_target == ["clock first: no target for ''"]


# --- stopping: met, breached, not applicable ------------------------------------------------


def test_a_clock_stopped_in_time_is_met_and_late_is_breached_at_its_due_time() -> None:
    clocks, clock = started(process("1 business hour"))
    change = clocks.stop(clock, MONDAY_10 + timedelta(minutes=59), now=MONDAY_10)
    assert clock.met is True and clock.breached_at is None
    assert [(e.kind, e.detail) for e in change.events] == [("stop", "met")]
    assert clocks.next_point() is None

    clocks, clock = started(process("1 business hour"))
    late = MONDAY_10 + timedelta(hours=2)
    change = clocks.stop(clock, late, now=late)
    assert clock.met is False and clock.breached_at == MONDAY_10 + timedelta(hours=1)
    assert [(e.kind, e.due_at, e.detail) for e in change.events] == [
        ("stop", clock.due_at, "breached")
    ]


def test_work_logged_in_time_is_met_though_its_event_came_after_the_breach() -> None:
    clocks, clock = started(process("1 business hour"))
    now = MONDAY_10 + timedelta(hours=3)
    drive(clocks, now, now)
    assert clock.breached_at is not None
    clocks.stop(clock, MONDAY_10 + timedelta(minutes=30), now=now)
    assert clock.met is True and clock.breached_at is None


def test_a_task_cancelled_by_an_event_is_not_applicable_unless_already_breached() -> None:
    clocks, clock = started(process("1 business hour"))
    change = clocks.stop(clock, MONDAY_10 + timedelta(minutes=5), now=MONDAY_10, cancelled=True)
    assert clock.met is None and change.events[0].detail == "not applicable"

    clocks, clock = started(process("1 business hour"))
    late = MONDAY_10 + timedelta(hours=2)
    clocks.stop(clock, late, now=late, cancelled=True)
    assert clock.met is False


# --- a new target --------------------------------------------------------------------------

PRIORITY = {"by": "{{ priority }}", "urgent": "2 business hours", "normal": "2 business days"}


def test_a_new_priority_counts_from_the_clocks_start() -> None:
    clocks, clock = started(process(PRIORITY), data={"priority": "normal"})
    an_hour_on = MONDAY_10 + timedelta(hours=1)
    assert not clocks.retarget(now=an_hour_on, data={"priority": "normal"}).events
    assert not clocks.retarget(now=an_hour_on, data={"priority": "unknown"}).events
    change = clocks.retarget(now=an_hour_on, data={"priority": "urgent"})
    assert clock.target == "urgent" and clock.due_at == MONDAY_10 + timedelta(hours=2)
    assert [(e.kind, e.at, e.due_at, e.detail) for e in change.events] == [
        ("retarget", an_hour_on, clock.due_at, "within 2 business hours (urgent)")
    ]
    # lowered again after the urgent target passed: the normal one still counts from the start
    later = MONDAY_10 + timedelta(hours=5)
    clocks.retarget(now=later, data={"priority": "normal"})
    assert clock.due_at == MONDAY_10 + timedelta(days=2)
    assert clock.counted_seconds == 5 * 3600


def test_a_priority_raised_past_its_target_is_due_at_once() -> None:
    clocks, clock = started(process(PRIORITY), data={"priority": "normal"})
    after_close = MONDAY_10 + timedelta(hours=9)  # 19:00: closed until Tuesday 09:00
    clocks.retarget(now=after_close, data={"priority": "urgent"})
    assert clock.due_at == MONDAY_10 + timedelta(hours=23)


def test_a_paused_clock_takes_its_new_target_when_it_resumes() -> None:
    spec = process(
        clocks={
            "resolution": {
                "stops": ["done"],
                "pauses_in": ["waiting"],
                "within": PRIORITY,
            }
        }
    )
    clocks = SlaClocks(spec, NEW_YORK, {})
    clocks.at_point("start", at=MONDAY_10, now=MONDAY_10, step=None, data={"priority": "normal"})
    clock = clocks.clocks["resolution"]
    clocks.at_point("waiting", at=MONDAY_10 + timedelta(hours=1), now=MONDAY_10, step=None, data={})
    change = clocks.retarget(now=MONDAY_10 + timedelta(hours=3), data={"priority": "urgent"})
    assert clock.due_at is None and change.events[0].due_at is None
    resumed = MONDAY_10 + timedelta(days=1)
    clocks.at_point("call", at=resumed, now=resumed, step="call", data={})
    assert clock.due_at == resumed + timedelta(hours=1)


MIXED = {"by": "{{ priority }}", "urgent": "4 hours", "normal": "2 business days"}


def test_a_target_of_the_other_kind_counts_what_ran_in_its_own_kind() -> None:
    # opened Friday 16:00 with 4 wall hours; an hour on, lowered to 2 business days: due
    # Tuesday 16:00, not at once (the wall hours ran are not business seconds)
    clocks, clock = started(process(MIXED), at=FRIDAY_16, data={"priority": "urgent"})
    assert not clock.business and clock.due_at == FRIDAY_16 + timedelta(hours=4)
    clocks.retarget(now=FRIDAY_16 + timedelta(hours=1), data={"priority": "normal"})
    assert clock.business and clock.counted_seconds == 3600
    assert clock.due_at == FRIDAY_16 + timedelta(days=4)
    # raised again on Monday 10:00: 4 wall hours from Friday 16:00 are long past
    monday = FRIDAY_16 + timedelta(days=2, hours=18)
    clocks.retarget(now=monday, data={"priority": "urgent"})
    assert not clock.business and clock.counted_seconds == (monday - FRIDAY_16).total_seconds()
    assert clock.due_at == monday


def test_a_paused_clock_given_the_other_kind_leaves_its_pauses_out() -> None:
    spec = process(clocks={"c": {"stops": ["done"], "pauses_in": ["waiting"], "within": MIXED}})
    clocks = SlaClocks(spec, NEW_YORK, {})
    clocks.at_point("start", at=MONDAY_10, now=MONDAY_10, step=None, data={"priority": "urgent"})
    clock = clocks.clocks["c"]
    for hours, step in [(1, "waiting"), (2, "call"), (3, "waiting")]:  # ran 10-11 and 12-13
        at = MONDAY_10 + timedelta(hours=hours)
        clocks.at_point(step, at=at, now=at, step=step, data={})
    hour = timedelta(hours=1)
    clocks.retarget(now=MONDAY_10 + 5 * hour, data={"priority": "normal"})
    assert clock.status == "paused" and clock.business and clock.counted_seconds == 2 * 3600
    resumed = MONDAY_10 + timedelta(days=1)  # Tuesday 10:00: 14 business hours left
    clocks.at_point("call", at=resumed, now=resumed, step="call", data={})
    assert clock.due_at == resumed + timedelta(days=1, hours=6)


def test_fixed_and_stopped_clocks_keep_their_targets() -> None:
    clocks, fixed = started(process("1 business hour"))
    assert not clocks.retarget(now=MONDAY_10, data={"priority": "urgent"}).events
    clocks, clock = started(process(PRIORITY), data={"priority": "normal"})
    clocks.stop(clock, MONDAY_10, now=MONDAY_10)
    assert not clocks.retarget(now=MONDAY_10, data={"priority": "urgent"}).events


# --- the ladder ----------------------------------------------------------------------------

LADDER: list[dict[str, Any]] = [
    {"at": "50%", "notify": "assignee"},
    {"at": "100%", "notify": "manager"},
    {"at": "150%", "do": [{"reassign": "manager"}, {"notify": "manager"}]},
]


def test_the_ladder_fires_in_order_with_the_breach_before_a_100_percent_rung() -> None:
    clocks, clock = started(process("8 business hours", LADDER))
    levels = []
    while (point := clocks.next_point()) is not None:
        fired = clocks.fire(point, now=point.at)
        levels.append((point.rung, point.at, fired.level, fired.events[0].kind))
    tuesday_10 = MONDAY_10 + timedelta(days=1)
    assert levels == [
        (0, MONDAY_10 + timedelta(hours=4), "warning", "warning"),
        (-1, tuesday_10, "breach", "breach"),
        (1, tuesday_10, "breach", "escalation"),
        (2, tuesday_10 + timedelta(hours=4), "escalation", "escalation"),
    ]
    assert clock.rungs_done == 3 and clock.breached_at == tuesday_10


def test_a_rung_says_what_it_does() -> None:
    clocks, _ = started(process("8 business hours", LADDER[2:]))
    drive(clocks, MONDAY_10 + timedelta(days=1), MONDAY_10)  # the breach
    point = clocks.next_point()
    assert point is not None and point.action == "reassign manager, notify manager"
    fired = clocks.fire(point, now=point.at + timedelta(minutes=1))
    assert fired.rung is not None and len(fired.rung.actions) == 2
    assert fired.events[0].detail == "rung 1: reassign manager, notify manager"
    assert fired.events[0].at == point.at + timedelta(minutes=1)


def test_the_earliest_clock_goes_first() -> None:
    spec = process("1 business hour", clocks=RESOLUTION)
    clocks, step_clock = started(spec)
    clocks.at_point("start", at=MONDAY_10, now=MONDAY_10, step="call", data={})
    fired = drive(clocks, MONDAY_10 + timedelta(days=3), MONDAY_10)
    assert [(name, rung) for name, rung, _ in fired] == [
        ("step:call", -1),
        ("resolution", -1),
        ("resolution", 0),
    ]


def test_a_clock_the_definition_does_not_name_has_no_target_and_no_ladder() -> None:
    clocks = SlaClocks(process(), NEW_YORK, {})
    for name in ("step:free", "step:gone", "gone"):
        stray = ClockState(name=name, started_at=MONDAY_10)
        assert clocks.within_of(stray) is None and clocks.ladder_of(stray) == []


# --- properties ----------------------------------------------------------------------------

INSTANTS = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 20), timezones=st.just(UTC)
)
DURATIONS = st.one_of(
    st.integers(1, 30).map(lambda n: f"{n} business hours"),
    st.integers(1, 5).map(lambda n: f"{n} business days"),
    st.integers(1, 3000).map(lambda n: f"{n} minutes"),
)
GAPS = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=4))
# a ladder's rungs ascend (the compiler refuses one that doesn't)
LADDERS = (
    st.lists(st.integers(1, 300), min_size=1, max_size=4)
    .map(sorted)
    .map(lambda shares: [f"{share}%" for share in shares])
)


def open_time(
    calendar: BusinessCalendar, clock: ClockState, start: datetime, end: datetime
) -> float:
    """The time a clock counts between two instants: open time, or wall time."""
    if clock.business:
        return business_time.elapsed(calendar, start, end).total_seconds()
    return (end - start).total_seconds()


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(CALENDARS), INSTANTS, DURATIONS)
def test_due_is_the_start_plus_the_sla_in_business_time(
    calendar: BusinessCalendar, start: datetime, within: str
) -> None:
    clocks, clock = started(process(within), calendar, start)
    due = business_time.add(calendar, start, parse_duration(within))
    assert clock.due_at == due
    assert clock.total_seconds == open_time(calendar, clock, start, due)
    point = clocks.next_point()
    assert point is not None and (point.rung, point.at) == (-1, due)


@settings(max_examples=120, deadline=None)
@given(
    st.sampled_from(CALENDARS),
    INSTANTS,
    DURATIONS,
    st.lists(st.tuples(GAPS, GAPS), min_size=1, max_size=4),
)
def test_pauses_add_exactly_their_business_length(
    calendar: BusinessCalendar,
    start: datetime,
    within: str,
    pauses: list[tuple[timedelta, timedelta]],
) -> None:
    spec = process(clocks={"c": {"stops": ["done"], "pauses_in": ["waiting"], "within": within}})
    clocks = SlaClocks(spec, calendar, {})
    clocks.at_point("start", at=start, now=start, step=None, data={})
    clock = clocks.clocks["c"]
    total, paused, at = clock.total_seconds, 0.0, start
    for running, waiting in pauses:
        pause, resume = at + running, at + running + waiting
        clocks.at_point("waiting", at=pause, now=pause, step="waiting", data={})
        clocks.at_point("call", at=resume, now=resume, step="call", data={})
        paused += open_time(calendar, clock, pause, resume)
        at = resume
    assert clock.status == "running" and clock.due_at is not None
    if clock.counted_seconds < total:  # still due in the future: the pauses moved it
        assert open_time(calendar, clock, start, clock.due_at) - paused == pytest.approx(
            total, abs=1e-6
        )
    else:  # counted up while it ran: due as soon as it counts again
        assert open_time(calendar, clock, at, clock.due_at) == 0


# a clock counts business time or wall time, whichever its target counts, and a target of the
# other kind recounts it
PRIORITIES = [
    {"urgent": "3 business hours", "normal": "2 business days", "slow": "5 business days"},
    {"urgent": "90 minutes", "normal": "1 day", "slow": "4 days"},
    {"urgent": "90 minutes", "normal": "2 business days", "slow": "4 days"},
    {"urgent": "3 business hours", "normal": "1 day", "slow": "5 business days"},
]


@settings(max_examples=120, deadline=None)
@given(
    st.sampled_from(CALENDARS),
    INSTANTS,
    st.sampled_from(PRIORITIES),
    st.sampled_from(["urgent", "normal", "slow"]),
    GAPS,
)
def test_a_priority_change_recomputes_from_the_clocks_start(
    calendar: BusinessCalendar, start: datetime, targets: dict[str, str], new: str, after: timedelta
) -> None:
    within = {"by": "{{ priority }}", **targets}
    clocks, clock = started(process(within), calendar, start, {"priority": "slow"})
    now = start + after
    clocks.retarget(now=now, data={"priority": new})
    duration = parse_duration(within[new])
    nominal = business_time.add(calendar, start, duration)
    assert clock.total_seconds == open_time(calendar, clock, start, nominal)
    assert clock.due_at is not None
    counted = open_time(calendar, clock, start, now)
    if counted < clock.total_seconds:
        # the same length of open time from the start: for hours, the same instant
        assert open_time(calendar, clock, start, clock.due_at) == pytest.approx(
            clock.total_seconds, abs=1e-6
        )
        if duration.kind != "business_days":
            assert clock.due_at == nominal
    else:
        assert clock.due_at >= now and open_time(calendar, clock, now, clock.due_at) == 0


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(CALENDARS),
    INSTANTS,
    DURATIONS,
    LADDERS,
    st.lists(st.tuples(st.sampled_from(["waiting", "call"]), GAPS), max_size=5),
    GAPS,
)
def test_rungs_fire_once_in_order_and_never_after_a_stop(
    calendar: BusinessCalendar,
    start: datetime,
    within: str,
    shares: list[str],
    moves: list[tuple[str, timedelta]],
    last: timedelta,
) -> None:
    ladder = [{"at": share, "notify": "manager"} for share in shares]
    spec = process(
        clocks={
            "c": {"stops": ["done"], "pauses_in": ["waiting"], "within": within, "escalate": ladder}
        }
    )
    clocks = SlaClocks(spec, calendar, {})
    clocks.at_point("start", at=start, now=start, step=None, data={})
    clock = clocks.clocks["c"]
    fired, now = [], start
    for step, gap in moves:
        fired += drive(clocks, now + gap, now)
        now += gap
        clocks.at_point(step, at=now, now=now, step=step, data={})
    fired += drive(clocks, now + last, now)
    clocks.at_point("done", at=now + last, now=now + last, step="done", data={})
    assert clock.status == "stopped" and clocks.next_point() is None
    rungs = [rung for _, rung, _ in fired if rung >= 0]
    assert rungs == list(range(len(rungs))) and clock.rungs_done == len(rungs)
    assert [rung for _, rung, _ in fired].count(-1) <= 1
    instants = [at for _, _, at in fired]
    assert instants == sorted(instants) and all(at <= now + last for at in instants)
    assert (clock.breached_at is not None) == (clock.met is False)


@settings(max_examples=120, deadline=None)
@given(st.sampled_from(CALENDARS), INSTANTS, DURATIONS, LADDERS)
def test_each_rung_fires_at_its_share_of_the_sla_or_right_after_the_one_before(
    calendar: BusinessCalendar, start: datetime, within: str, shares: list[str]
) -> None:
    ladder = [{"at": share, "notify": "manager"} for share in shares]
    clocks, clock = started(process(within, ladder), calendar, start)
    total, due = clock.total_seconds, clock.due_at
    assert due is not None
    fired = drive(clocks, datetime(2028, 1, 1, tzinfo=UTC), start)
    expected, earliest = [], start
    for rung, share in enumerate(shares):
        fraction = float(share.rstrip("%")) / 100
        at = (
            due
            if fraction == 1
            else business_time.add_business_seconds(calendar, start, fraction * total)
            if clock.business
            else start + timedelta(seconds=fraction * total)
        )
        earliest = max(earliest, at)
        expected.append((rung, earliest))
    assert [(rung, at) for _, rung, at in fired if rung >= 0] == expected
    assert [at for _, rung, at in fired if rung < 0] == [due]
