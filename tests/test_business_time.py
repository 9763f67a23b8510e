from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from duly.language.business_time import (
    BusinessCalendar,
    add,
    add_business_seconds,
    elapsed,
    is_open,
    next_opening,
)
from duly.language.durations import Duration, parse_duration

NEW_YORK = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}


def minutes(hhmm: str) -> int:
    hours, mins = hhmm.split(":")
    return int(hours) * 60 + int(mins)


def ranges(text: str) -> list[tuple[int, int]]:
    """'09:00-12:00,13:00-17:00' -> [(540, 720), (780, 1020)]; '' -> closed."""
    if not text:
        return []
    return [
        (minutes(start), minutes(end))
        for start, end in (part.split("-") for part in text.split(","))
    ]


def make_calendar(
    tz: str = "America/New_York",
    hours: str = "09:00-17:00",
    days: str = "mon-fri",
    closed: tuple[str, ...] = (),
    special: dict[str, str] | None = None,
) -> BusinessCalendar:
    first, _, last = days.partition("-")
    open_days = range(DAYS[first], DAYS[last or first] + 1)
    return BusinessCalendar(
        name="test",
        timezone=tz,
        weekly=[ranges(hours) if day in open_days else [] for day in range(7)],
        closed_dates=[date.fromisoformat(day) for day in closed],
        special_hours={
            date.fromisoformat(day): ranges(text) for day, text in (special or {}).items()
        },
    )


def ny(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK)


def lord_howe(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo("Australia/Lord_Howe"))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# New York office: Thanksgiving (Thu 2026-11-26) closed and the Friday after it a half day;
# Labor Day (Mon 2026-09-07) and Independence Day observed (Fri 2026-07-03) closed.
US = make_calendar(
    closed=("2026-07-03", "2026-09-07", "2026-11-26"),
    special={"2026-11-27": "09:00-13:00"},
)
SPLIT = make_calendar(
    hours="09:00-12:00,13:00-17:00",
    special={"2026-06-16": "09:00-11:00,14:00-17:00", "2026-06-17": "14:00-17:00"},
)
BERLIN_OFFICE = make_calendar(tz="Europe/Berlin")
ALWAYS = make_calendar(hours="00:00-24:00", days="mon-sun")
SUNDAY_NIGHTS = make_calendar(hours="00:00-06:00", days="sun")
SKIPPED_OPENING = make_calendar(hours="02:30-05:00", days="sun")
LORD_HOWE = make_calendar(tz="Australia/Lord_Howe", hours="00:00-24:00", days="mon-sun")
LORD_HOWE_SUNDAYS = make_calendar(tz="Australia/Lord_Howe", hours="01:00-04:00", days="sun")


@pytest.mark.parametrize(
    ("calendar", "start", "duration", "expected"),
    [
        # Business hours.
        pytest.param(US, ny(2026, 6, 12, 16), "2 business hours", utc(2026, 6, 15, 14),
                     id="hours skip the weekend: Fri 16:00 + 2h -> Mon 10:00 EDT"),
        pytest.param(US, ny(2026, 6, 13, 10), "1 business hour", utc(2026, 6, 15, 14),
                     id="start on Saturday moves to Monday's opening: -> Mon 10:00 EDT"),
        pytest.param(US, ny(2026, 6, 15, 7), "30 business minutes", utc(2026, 6, 15, 13, 30),
                     id="start before opening: Mon 07:00 + 30min -> 09:30 EDT"),
        pytest.param(US, ny(2026, 6, 15, 18), "1 business hour", utc(2026, 6, 16, 14),
                     id="start after closing: Mon 18:00 + 1h -> Tue 10:00 EDT"),
        pytest.param(US, ny(2026, 6, 15, 17), "1 business hour", utc(2026, 6, 16, 14),
                     id="start at the closing instant counts from the next opening"),
        pytest.param(US, ny(2026, 6, 15, 9), "8 business hours", utc(2026, 6, 15, 21),
                     id="count ending exactly at closing returns the close: Mon 17:00 EDT"),
        pytest.param(US, ny(2026, 6, 15, 13), "12 business hours", utc(2026, 6, 16, 21),
                     id="count ending at the next day's close: Tue 17:00 EDT"),
        pytest.param(US, ny(2026, 11, 25, 16), "2 business hours", utc(2026, 11, 27, 15),
                     id="Thanksgiving is skipped: Wed 16:00 + 2h -> Fri 10:00 EST"),
        pytest.param(US, ny(2026, 11, 25, 16), "6 business hours", utc(2026, 11, 30, 15),
                     id="half day counts 4h: Wed 16:00 + 6h -> Mon 10:00 EST"),
        pytest.param(US, ny(2026, 9, 4, 15), "3 business hours", utc(2026, 9, 8, 14),
                     id="Friday before Labor Day + 3h -> Tue 10:00 EDT"),
        pytest.param(US, ny(2026, 3, 6, 16), "2 business hours", utc(2026, 3, 9, 14),
                     id="spring forward weekend: Fri 16:00 EST + 2h -> Mon 10:00 EDT"),
        pytest.param(US, ny(2026, 10, 30, 16), "2 business hours", utc(2026, 11, 2, 15),
                     id="fall back weekend: Fri 16:00 EDT + 2h -> Mon 10:00 EST"),
        pytest.param(ALWAYS, ny(2026, 3, 8, 1), "2 business hours", utc(2026, 3, 8, 8),
                     id="open through spring forward: 01:00 EST + 2h -> 04:00 EDT"),
        pytest.param(ALWAYS, ny(2026, 11, 1, 0, 30), "2 business hours", utc(2026, 11, 1, 6, 30),
                     id="open through fall back: 00:30 EDT + 2h -> 01:30 EST"),
        pytest.param(SKIPPED_OPENING, ny(2026, 3, 7, 12), "1 business hour", utc(2026, 3, 8, 8),
                     id="02:30 opening skipped by spring forward opens at 03:00 EDT"),
        # Split hours with a lunch gap.
        pytest.param(SPLIT, ny(2026, 6, 15, 12, 30), "1 business hour", utc(2026, 6, 15, 18),
                     id="start in the lunch gap: 12:30 + 1h -> 14:00 EDT"),
        pytest.param(SPLIT, ny(2026, 6, 15, 11), "2 business hours", utc(2026, 6, 15, 18),
                     id="count across lunch: 11:00 + 2h -> 14:00 EDT"),
        pytest.param(SPLIT, ny(2026, 6, 15, 11), "1 business hour", utc(2026, 6, 15, 16),
                     id="count ending at the lunch close returns 12:00, not 13:00"),
        # A calendar in Berlin, asked with New York and UTC times.
        pytest.param(BERLIN_OFFICE, ny(2026, 6, 15, 8), "4 business hours", utc(2026, 6, 16, 8),
                     id="Berlin from New York 08:00 EDT (14:00 CEST) + 4h -> Tue 10:00 CEST"),
        pytest.param(BERLIN_OFFICE, utc(2026, 6, 15, 6), "1 business hour", utc(2026, 6, 15, 8),
                     id="Berlin from UTC 06:00 (08:00 CEST, closed) + 1h -> 10:00 CEST"),
        pytest.param(BERLIN_OFFICE, ny(2026, 3, 16, 4), "2 business hours", utc(2026, 3, 16, 10),
                     id="Berlin while only the US is on summer time: 09:00 CET + 2h -> 11:00 CET"),
        # Business days.
        pytest.param(US, ny(2026, 9, 4, 15), "1 business day", utc(2026, 9, 8, 19),
                     id="Friday 15:00 before Labor Day + 1 day -> Tue 15:00 EDT"),
        pytest.param(US, ny(2026, 3, 6, 10), "1 business day", utc(2026, 3, 9, 14),
                     id="business day keeps local time across DST: -> Mon 10:00 EDT"),
        pytest.param(US, ny(2026, 11, 25, 15), "1 business day", utc(2026, 11, 27, 18),
                     id="landing on a half day after closing -> Fri 13:00 EST (its close)"),
        pytest.param(US, ny(2026, 11, 23, 11), "5 business days", utc(2026, 12, 1, 16),
                     id="5 days over Thanksgiving, the half day counts -> Tue 12-01 11:00 EST"),
        pytest.param(US, ny(2026, 6, 13, 12), "1 business day", utc(2026, 6, 16, 13),
                     id="business day from Saturday: Mon 09:00 + 1 day -> Tue 09:00 EDT"),
        pytest.param(US, ny(2026, 6, 15, 18), "2 business days", utc(2026, 6, 18, 13),
                     id="business days from after closing: Tue 09:00 + 2 -> Thu 09:00 EDT"),
        pytest.param(SPLIT, ny(2026, 6, 15, 11, 30), "1 business day", utc(2026, 6, 16, 15),
                     id="target time in the target day's gap -> close before it, 11:00 EDT"),
        pytest.param(SPLIT, ny(2026, 6, 16, 10), "1 business day", utc(2026, 6, 17, 18),
                     id="target day opens later than the time -> its opening, 14:00 EDT"),
        pytest.param(BERLIN_OFFICE, ny(2026, 6, 12, 11), "1 business day", utc(2026, 6, 16, 7),
                     id="Berlin, Fri 17:00 CEST is closing -> Mon 09:00 + 1 -> Tue 09:00 CEST"),
        pytest.param(ALWAYS, ny(2026, 3, 7, 2, 30), "1 business day", utc(2026, 3, 8, 7),
                     id="target time skipped by spring forward -> the change, 03:00 EDT"),
        pytest.param(ALWAYS, ny(2026, 11, 1, 1, 50), "1 business day", utc(2026, 11, 2, 6, 50),
                     id="start in the first pass of the repeated hour: 01:50 next day"),
        pytest.param(ALWAYS, datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=NEW_YORK),
                     "1 business day", utc(2026, 11, 2, 7),
                     id="start in the second pass of the repeated hour reads as 02:00"),
        # Wall-clock durations are absolute elapsed time.
        pytest.param(US, ny(2026, 3, 7, 12), "24 hours", utc(2026, 3, 8, 17),
                     id="24 wall hours over spring forward: Sat 12:00 EST -> Sun 13:00 EDT"),
        pytest.param(US, ny(2026, 10, 31, 12), "1 day", utc(2026, 11, 1, 16),
                     id="a wall day over fall back: Sat 12:00 EDT -> Sun 11:00 EST"),
        pytest.param(US, ny(2026, 6, 13, 10), "PT4H", utc(2026, 6, 13, 18),
                     id="wall time ignores the calendar: Saturday 10:00 + PT4H -> 14:00 EDT"),
    ],
)  # fmt: skip
def test_add_hand_worked(calendar, start, duration, expected):
    deadline = add(calendar, start, parse_duration(duration))
    assert deadline == expected
    assert deadline.tzinfo is UTC


@pytest.mark.parametrize(
    ("calendar", "start", "end", "expected"),
    [
        pytest.param(US, ny(2026, 11, 25, 9), ny(2026, 11, 27, 17), timedelta(hours=12),
                     id="across Thanksgiving and the half day: 8h + 0h + 4h"),
        pytest.param(US, ny(2026, 6, 13, 12), ny(2026, 6, 20, 12), timedelta(hours=40),
                     id="both ends on Saturdays, in closed time: one working week"),
        pytest.param(US, ny(2026, 6, 1), ny(2026, 7, 6), timedelta(hours=192),
                     id="five weeks minus Independence Day observed: 24 days x 8h"),
        pytest.param(US, ny(2026, 3, 6, 16), ny(2026, 3, 9, 10), timedelta(hours=2),
                     id="over the spring forward weekend: 1h Friday + 1h Monday"),
        pytest.param(ALWAYS, ny(2026, 3, 8), ny(2026, 3, 9), timedelta(hours=23),
                     id="always open, spring forward day has 23 real hours"),
        pytest.param(ALWAYS, ny(2026, 11, 1), ny(2026, 11, 2), timedelta(hours=25),
                     id="always open, fall back day has 25 real hours"),
        pytest.param(SUNDAY_NIGHTS, ny(2026, 3, 7), ny(2026, 3, 9), timedelta(hours=5),
                     id="00:00-06:00 on the spring forward night is 5 real hours"),
        pytest.param(SUNDAY_NIGHTS, ny(2026, 10, 31), ny(2026, 11, 2), timedelta(hours=7),
                     id="00:00-06:00 on the fall back night is 7 real hours"),
        pytest.param(LORD_HOWE, lord_howe(2026, 10, 4), lord_howe(2026, 10, 5),
                     timedelta(hours=23, minutes=30),
                     id="Lord Howe's half-hour spring forward day has 23.5 real hours"),
        pytest.param(LORD_HOWE, lord_howe(2026, 4, 5), lord_howe(2026, 4, 6),
                     timedelta(hours=24, minutes=30),
                     id="Lord Howe's half-hour fall back day has 24.5 real hours"),
        pytest.param(LORD_HOWE_SUNDAYS, lord_howe(2026, 10, 3), lord_howe(2026, 10, 5),
                     timedelta(hours=2, minutes=30),
                     id="Lord Howe 01:00-04:00 over the skipped half hour is 2.5 real hours"),
        pytest.param(SPLIT, ny(2026, 6, 15, 8), ny(2026, 6, 15, 18), timedelta(hours=7),
                     id="split day without lunch: 3h + 4h"),
        pytest.param(BERLIN_OFFICE, ny(2026, 6, 15, 2), utc(2026, 6, 15, 12), timedelta(hours=5),
                     id="Berlin between New York 02:00 EDT and 12:00 UTC: 08:00-14:00 CEST"),
        pytest.param(US, ny(2026, 6, 15, 10), ny(2026, 6, 15, 10), timedelta(0),
                     id="equal instants: nothing elapsed"),
    ],
)  # fmt: skip
def test_elapsed_hand_worked(calendar, start, end, expected):
    assert elapsed(calendar, start, end) == expected


def test_elapsed_refuses_an_end_before_the_start():
    with pytest.raises(ValueError, match="is before start"):
        elapsed(US, ny(2026, 6, 15, 12), ny(2026, 6, 15, 11))


def test_is_open_includes_the_opening_and_excludes_the_closing_instant():
    assert is_open(US, ny(2026, 6, 15, 9))
    assert is_open(US, ny(2026, 6, 15, 17) - timedelta(seconds=1))
    assert not is_open(US, ny(2026, 6, 15, 17))
    assert not is_open(US, ny(2026, 11, 26, 12))  # Thanksgiving
    assert not is_open(US, ny(2026, 11, 27, 14))  # after the half day's close
    assert is_open(BERLIN_OFFICE, ny(2026, 6, 15, 3))  # 09:00 CEST


def test_an_opening_skipped_by_spring_forward_opens_at_the_change():
    assert not is_open(SKIPPED_OPENING, utc(2026, 3, 8, 6, 59))  # 01:59 EST
    assert is_open(SKIPPED_OPENING, utc(2026, 3, 8, 7))  # 03:00 EDT
    assert next_opening(SKIPPED_OPENING, ny(2026, 3, 8)) == utc(2026, 3, 8, 7)


def test_next_opening_is_the_instant_itself_when_open():
    assert next_opening(US, ny(2026, 6, 15, 10, 15)) == utc(2026, 6, 15, 14, 15)


def test_next_opening_skips_the_weekend_and_the_holiday():
    assert next_opening(US, ny(2026, 9, 4, 17)) == utc(2026, 9, 8, 13)


def test_add_business_seconds_counts_fractions_and_zero_moves_to_the_opening():
    assert add_business_seconds(US, ny(2026, 6, 15, 9), 0.5) == utc(2026, 6, 15, 13) + timedelta(
        milliseconds=500
    )
    assert add_business_seconds(US, ny(2026, 6, 13, 9), 0) == utc(2026, 6, 15, 13)


def test_add_business_seconds_refuses_a_negative_count():
    with pytest.raises(ValueError, match="zero or more"):
        add_business_seconds(US, ny(2026, 6, 15, 9), -1)


def test_a_seventy_five_percent_rung_is_added_in_business_time():
    start = ny(2026, 6, 12, 16)
    due = add(US, start, parse_duration("4 business hours"))
    rung = add_business_seconds(US, start, 0.75 * elapsed(US, start, due).total_seconds())
    assert rung == utc(2026, 6, 15, 15)  # Fri 16:00 + 3h -> Mon 11:00 EDT


@pytest.mark.parametrize("call", [add, lambda cal, at, _d: next_opening(cal, at)])
def test_naive_start_is_refused(call):
    with pytest.raises(ValueError, match="must be timezone-aware"):
        call(US, datetime(2026, 6, 15, 9), parse_duration("1 business hour"))


def test_naive_times_are_refused_by_elapsed_and_is_open():
    with pytest.raises(ValueError, match="must be timezone-aware"):
        elapsed(US, ny(2026, 6, 15, 9), datetime(2026, 6, 15, 10))
    with pytest.raises(ValueError, match="must be timezone-aware"):
        is_open(US, datetime(2026, 6, 15, 10))


def test_calendar_without_open_hours_raises_instead_of_looping():
    never = make_calendar(hours="")
    with pytest.raises(ValueError, match="has no open hours at all"):
        add(never, ny(2026, 6, 15, 9), parse_duration("1 business hour"))
    with pytest.raises(ValueError, match="has no open hours at all"):
        add(never, ny(2026, 6, 15, 9), parse_duration("1 business day"))
    with pytest.raises(ValueError, match="has no open hours at all"):
        next_opening(never, ny(2026, 6, 15, 9))


def test_search_for_open_time_gives_up_after_3660_days():
    once = make_calendar(hours="", special={"2020-01-06": "09:00-17:00"})
    with pytest.raises(ValueError, match="no open time within 3660 days"):
        add(once, ny(2026, 6, 15, 9), parse_duration("1 business hour"))
    with pytest.raises(ValueError, match="no open time within 3660 days"):
        add(US, ny(2026, 6, 15, 9), Duration(kind="business_days", days=5000, text="5000"))


def test_a_long_business_day_deadline_lands_on_the_right_day():
    # speed is measured in bench/, never asserted here
    duration = parse_duration("200 business days")
    assert add(US, ny(2026, 3, 6, 10), duration) == utc(2026, 12, 16, 15)  # Wed 10:00 EST


def test_calendar_round_trips_through_json():
    again = BusinessCalendar.model_validate(US.model_dump(mode="json"))
    assert again == US
    assert add(again, ny(2026, 11, 25, 16), parse_duration("6 business hours")) == utc(
        2026, 11, 30, 15
    )


def test_model_copy_with_new_hours_uses_them():
    copy = US.model_copy(update={"closed_dates": []})
    assert not is_open(US, ny(2026, 11, 26, 12))
    assert is_open(copy, ny(2026, 11, 26, 12))


def test_special_hours_win_over_closed_dates():
    calendar = make_calendar(closed=("2026-06-15",), special={"2026-06-15": "10:00-11:00"})
    assert next_opening(calendar, ny(2026, 6, 15, 9)) == utc(2026, 6, 15, 14)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"weekly": [[(540, 1020)]] * 5}, "weekly hours need 7 days, Monday to Sunday, found 5"),
        ({"weekly": [[(540, 480)]] * 7}, r"Monday has open range \(540, 480\)"),
        ({"weekly": [[(540, 1500)]] * 7}, r"Monday has open range \(540, 1500\)"),
        ({"weekly": [[(540, 720), (700, 1020)]] * 7}, "must be sorted and must not overlap"),
        ({"special_hours": {"2026-11-27": [(-5, 60)]}}, "2026-11-27 has open range"),
    ],
)
def test_invalid_calendars_are_refused_with_a_clear_message(changes, message):
    data = {**US.model_dump(), **changes}
    with pytest.raises(ValidationError, match=message):
        BusinessCalendar.model_validate(data)


# Property tests --------------------------------------------------------------------------------

ZONES = ["America/New_York", "Europe/Berlin", "Asia/Kolkata", "Australia/Lord_Howe"]
# Dates the clocks change in the zones above, so generated hours and starts meet them often.
CLOCK_CHANGES = [
    datetime(2026, 3, 8, 7, tzinfo=UTC),
    datetime(2026, 11, 1, 6, tzinfo=UTC),
    datetime(2026, 3, 29, 1, tzinfo=UTC),
    datetime(2026, 10, 25, 1, tzinfo=UTC),
    datetime(2026, 4, 4, 15, tzinfo=UTC),
    datetime(2026, 10, 3, 15, 30, tzinfo=UTC),
]
FIRST, LAST = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 6, 30, tzinfo=UTC)

# Quarter hours: they hit the clock changes' edges (02:00, 02:30, 03:00) and the times between.
boundaries = st.integers(0, 96).map(lambda quarters: quarters * 15)


def pair_up(points: list[int]) -> list[tuple[int, int]]:
    points = sorted(points)
    return [(points[i], points[i + 1]) for i in range(0, len(points) - 1, 2)]


def build_calendar(timezone, weekly, closed_dates, special_hours):
    if not any(weekly):
        weekly = [[(540, 1020)], *weekly[1:]]
    return BusinessCalendar(
        name="generated",
        timezone=timezone,
        weekly=weekly,
        closed_dates=closed_dates,
        special_hours=special_hours,
    )


# Strategies are built once, at module level: rebuilding them per example is what costs time.
open_hours = st.lists(boundaries, unique=True, max_size=4).map(pair_up)
some_dates = st.one_of(
    st.dates(FIRST.date(), LAST.date()),
    st.sampled_from([change.date() for change in CLOCK_CHANGES]),
)
calendars = st.builds(
    build_calendar,
    timezone=st.sampled_from(ZONES),
    weekly=st.lists(open_hours, min_size=7, max_size=7),
    closed_dates=st.lists(some_dates, max_size=5),
    special_hours=st.dictionaries(some_dates, open_hours, max_size=4),
)


# Whole seconds, in a zone of their own; often within two days of a clock change.
instants = st.one_of(
    st.integers(0, int((LAST - FIRST).total_seconds())).map(lambda s: FIRST + timedelta(seconds=s)),
    st.builds(
        lambda change, s: change + timedelta(seconds=s),
        st.sampled_from(CLOCK_CHANGES),
        st.integers(-2 * 86400, 2 * 86400),
    ),
).flatmap(lambda at: st.sampled_from(ZONES).map(lambda zone: at.astimezone(ZoneInfo(zone))))


def weekly_open_seconds(calendar: BusinessCalendar) -> int:
    return sum(end - start for day in calendar.weekly for start, end in day) * 60


@st.composite
def business_hours(draw, calendar):
    # Up to ten weeks' worth of the calendar's open time, so the search limit is never near.
    seconds = draw(st.integers(1, 10 * weekly_open_seconds(calendar)))
    return Duration(kind="business_hours", seconds=seconds, text=f"{seconds} business seconds")


business_days = st.integers(1, 40).map(
    lambda n: Duration(kind="business_days", days=n, text=f"{n}")
)


def in_utc(moment: datetime) -> datetime:
    # Same-zone comparisons and subtraction ignore the UTC offset, so compare in UTC.
    return moment.astimezone(UTC)


def open_or_at_close(calendar, at):
    return is_open(calendar, at) or is_open(calendar, at - timedelta(microseconds=1))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), calendar=calendars, start=instants)
def test_elapsed_of_an_added_business_duration_gives_it_back(data, calendar, start):
    duration = data.draw(business_hours(calendar))
    deadline = add(calendar, start, duration)
    assert elapsed(calendar, start, deadline) == timedelta(seconds=duration.seconds)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), calendar=calendars, start=instants)
def test_add_is_monotonic_in_the_duration(data, calendar, start):
    shorter, longer = sorted(data.draw(business_hours(calendar)).seconds for _ in range(2))
    assert add_business_seconds(calendar, start, shorter) <= add_business_seconds(
        calendar, start, longer
    )
    fewer, more = sorted(data.draw(business_days).days for _ in range(2))
    assert add(calendar, start, Duration(kind="business_days", days=fewer, text="")) <= add(
        calendar, start, Duration(kind="business_days", days=more, text="")
    )


@settings(max_examples=200, deadline=None)
@given(data=st.data(), calendar=calendars, starts=st.lists(instants, min_size=2, max_size=2))
def test_add_is_monotonic_in_the_start(data, calendar, starts):
    earlier, later = sorted(starts, key=in_utc)
    hours = data.draw(business_hours(calendar))
    days = data.draw(business_days)
    assert add(calendar, earlier, hours) <= add(calendar, later, hours)
    assert add(calendar, earlier, days) <= add(calendar, later, days)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), calendar=calendars, start=instants)
def test_business_deadlines_never_land_in_closed_time(data, calendar, start):
    assert open_or_at_close(calendar, add(calendar, start, data.draw(business_hours(calendar))))
    assert open_or_at_close(calendar, add(calendar, start, data.draw(business_days)))


@settings(max_examples=200, deadline=None)
@given(calendar=calendars, moments=st.lists(instants, min_size=3, max_size=3))
def test_elapsed_is_additive(calendar, moments):
    first, middle, last = sorted(moments, key=in_utc)
    assert elapsed(calendar, first, last) == elapsed(calendar, first, middle) + elapsed(
        calendar, middle, last
    )


@settings(max_examples=200, deadline=None)
@given(calendar=calendars, start=instants)
def test_next_opening_is_the_start_exactly_when_open(calendar, start):
    opening = next_opening(calendar, start)
    assert (opening == in_utc(start)) == is_open(calendar, start)
    assert is_open(calendar, opening)
    assert elapsed(calendar, start, opening) == timedelta(0)


@settings(max_examples=200, deadline=None)
@given(zone=st.sampled_from(ZONES), moments=st.lists(instants, min_size=2, max_size=2))
def test_an_always_open_calendar_counts_real_elapsed_time(zone, moments):
    start, end = sorted(moments, key=in_utc)
    always = make_calendar(tz=zone, hours="00:00-24:00", days="mon-sun")
    real = in_utc(end) - in_utc(start)  # same-zone subtraction would give wall-clock time
    assert elapsed(always, start, end) == real
    assert add_business_seconds(always, start, real.total_seconds()) == in_utc(end)
