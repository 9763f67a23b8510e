"""Business-time arithmetic on a business calendar: deadlines, open time elapsed, openings.

Workflows import this module under ``workflow.unsafe.imports_passed_through()``, so everything
here is a pure function of its arguments: no I/O beyond zoneinfo's time-zone data, no clock
reads, no randomness.

Local times are resolved in the calendar's zone. A time that occurs twice (clocks go back) means
its first occurrence; a time skipped when clocks go forward means the moment of the change, so a
02:30 opening on a night the clocks jump from 02:00 to 03:00 opens at 03:00. Open time is always
counted in real elapsed time, so a night that loses or gains an hour counts one hour less or more.

Internally instants are integers of microseconds since the Unix epoch, which keeps sums exact and
the day loops cheap: a day's open ranges turn into UTC spans with one cached offset lookup unless
the clocks change that day.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from duly.language.durations import Duration

OpenRange = tuple[int, int]
"""Open hours ``[start, end)`` in minutes from local midnight, ``0 <= start < end <= 1440``."""

SEARCH_LIMIT_DAYS = 3660
"""How many days ahead the arithmetic looks for open time before giving up."""

_Span = tuple[int, int]  # [start, end) in microseconds since the epoch, UTC
_US = 1_000_000
_MINUTE_US = 60 * _US
_DAY_US = 86_400 * _US
_ONE_DAY = timedelta(days=1)
_MICROSECOND = timedelta(microseconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.date().toordinal()
_CACHE_DAYS = 4 * SEARCH_LIMIT_DAYS
_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class BusinessCalendar(BaseModel):
    """When a team is open for business, with holidays already resolved to dates.

    Attributes:
        name: The calendar's id, used in messages.
        timezone: IANA time zone the hours are in, e.g. ``America/New_York``.
        weekly: Seven lists of open ranges, Monday to Sunday; each range is ``(start, end)`` in
            minutes from local midnight, ``[start, end)``, sorted and not overlapping.
        closed_dates: Local dates closed all day (public holidays and the like).
        special_hours: Local dates with their own open ranges (a half day, say); an empty list
            closes the day. They win over ``closed_dates`` and ``weekly``.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    timezone: str
    weekly: list[list[OpenRange]]
    closed_dates: list[date] = Field(default_factory=list)
    special_hours: dict[date, list[OpenRange]] = Field(default_factory=dict)

    _table: _Table | None = PrivateAttr(default=None)

    def model_post_init(self, context: object, /) -> None:
        """Build the lookup table (also runs for ``model_construct``)."""
        self._table = _Table(self)

    @model_validator(mode="after")
    def _check(self) -> Self:
        try:
            _zone(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"calendar {self.name!r}: unknown time zone {self.timezone!r}; "
                "use an IANA name such as 'America/New_York'"
            ) from None
        if len(self.weekly) != 7:
            raise ValueError(
                f"calendar {self.name!r}: weekly hours need 7 days, Monday to Sunday, "
                f"found {len(self.weekly)}"
            )
        for day_name, ranges in zip(_DAY_NAMES, self.weekly, strict=True):
            _check_ranges(self.name, day_name, ranges)
        for day, ranges in self.special_hours.items():
            _check_ranges(self.name, day.isoformat(), ranges)
        return self

    def open_ranges(self, day: date) -> tuple[OpenRange, ...]:
        """Return the open ranges of a local date, after special hours and closed dates."""
        return _table(self).open_ranges(day)


class _Table:
    """A calendar's hours as plain lookups, and the UTC spans of the days asked for so far.

    Pydantic private attributes are slow to read, so each public function fetches this once.
    The span cache is pure memoisation: the calendar is frozen, so entries never go stale.
    """

    __slots__ = ("name", "timezone", "weekly", "special", "closed", "ever_open", "cache", "owner")

    def __init__(self, calendar: BusinessCalendar) -> None:
        self.name = calendar.name
        self.timezone = calendar.timezone
        self.weekly = tuple(tuple(day) for day in calendar.weekly)
        self.special = {day: tuple(ranges) for day, ranges in calendar.special_hours.items()}
        self.closed = frozenset(calendar.closed_dates)
        self.ever_open = any(self.weekly) or any(self.special.values())
        self.cache: dict[date, tuple[_Span, ...]] = {}
        self.owner = id(calendar)

    def __eq__(self, other: object) -> bool:
        # Derived from the fields, so it never makes two calendars unequal (pydantic compares
        # private attributes too).
        return isinstance(other, _Table)

    def open_ranges(self, day: date) -> tuple[OpenRange, ...]:
        special = self.special.get(day)
        if special is not None:
            return special
        if day in self.closed:
            return ()
        return self.weekly[day.weekday()]

    def spans(self, day: date) -> tuple[_Span, ...]:
        """Return a local date's open ranges as sorted, non-empty UTC spans."""
        spans = self.cache.get(day)
        if spans is None:
            if len(self.cache) >= _CACHE_DAYS:  # a long-lived calendar: keep memory bounded
                self.cache.clear()
            spans = self.cache[day] = self._compute_spans(day)
        return spans

    def _compute_spans(self, day: date) -> tuple[_Span, ...]:
        ranges = self.open_ranges(day)
        if not ranges:
            return ()
        ordinal = day.toordinal()
        offset = _steady_offset_us(self.timezone, ordinal)
        if offset is not None:
            base = (ordinal - _EPOCH_ORDINAL) * _DAY_US - offset
            return tuple(
                (base + start * _MINUTE_US, base + end * _MINUTE_US) for start, end in ranges
            )
        spans = []
        for start, end in ranges:
            open_at = _local_to_us(self.timezone, day, start * _MINUTE_US)
            close_at = _local_to_us(self.timezone, day, end * _MINUTE_US)
            if close_at > open_at:  # a range inside a skipped hour has no real time
                spans.append((open_at, close_at))
        return tuple(spans)

    def local_date(self, instant: int) -> date:
        return _from_us(instant).astimezone(_zone(self.timezone)).date()

    def spans_after(self, instant: int) -> Iterator[tuple[date, _Span]]:
        """Yield, in order, the open spans that end after ``instant``, with their local dates."""
        if not self.ever_open:
            return
        day = self.local_date(instant) - _ONE_DAY  # a day early, as in `elapsed`
        for _ in range(SEARCH_LIMIT_DAYS + 2):
            for span in self.spans(day):
                if span[1] > instant:
                    yield day, span
            day += _ONE_DAY

    def no_open_time(self, start: datetime) -> ValueError:
        if not self.ever_open:
            return ValueError(f"calendar {self.name!r} has no open hours at all")
        return ValueError(
            f"calendar {self.name!r} has no open time within {SEARCH_LIMIT_DAYS} days "
            f"after {start.isoformat()}"
        )


def _table(calendar: BusinessCalendar) -> _Table:
    table = calendar._table
    if table is None or table.owner != id(calendar):  # model_copy(update=...) copies the table
        table = calendar._table = _Table(calendar)
    return table


def add(calendar: BusinessCalendar, start: datetime, duration: Duration) -> datetime:
    """Return the deadline ``duration`` after ``start``.

    - ``wall``: absolute elapsed time, whatever the calendar and clock changes.
    - ``business_hours``: counts open time only (see `add_business_seconds`).
    - ``business_days``: the same local time of day N working days later, where a working day is
      a local date with any open time; a start outside open hours first moves to the next
      opening. When that time of day is not open on the target day (a half day, a lunch gap),
      the deadline is the close of the last open range that starts before it, or, when the day
      opens later than that time, the day's first opening. So the deadline is always on the
      target day, open or exactly at the end of an open range, and never later than the same
      time of day unless the day opens later. A start in the second pass of a repeated hour
      (clocks going back) reads as the end of the repeat, so later starts never get earlier
      deadlines.

    Args:
        calendar: The business calendar.
        start: When the clock starts; timezone-aware, in any zone.
        duration: How long.

    Returns:
        The deadline, timezone-aware in UTC.

    Raises:
        ValueError: ``start`` is naive, or the calendar has no open time to count.
    """
    if duration.kind == "wall":
        _to_us(start, "start")
        return start.astimezone(UTC) + timedelta(seconds=duration.seconds)
    if duration.kind == "business_hours":
        return add_business_seconds(calendar, start, duration.seconds)
    return _add_business_days(calendar, start, duration.days)


def add_business_seconds(calendar: BusinessCalendar, start: datetime, seconds: float) -> datetime:
    """Return the instant when ``seconds`` of open time have passed since ``start``.

    A start in closed time first moves to the next opening. A count that runs out exactly at a
    closing time returns that closing instant, not the next opening.

    Args:
        calendar: The business calendar.
        start: When counting starts; timezone-aware, in any zone.
        seconds: Open time to count, zero or more; fractions count to the microsecond.

    Returns:
        The instant, timezone-aware in UTC.

    Raises:
        ValueError: ``start`` is naive, ``seconds`` is negative, or the calendar has no open time
            to count.
    """
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError(f"business seconds to add must be zero or more, found {seconds}")
    table = _table(calendar)
    at = _to_us(start, "start")
    remaining = round(seconds * _US)
    for _day, (open_at, close_at) in table.spans_after(at):
        open_at = max(open_at, at)
        if remaining <= close_at - open_at:
            return _from_us(open_at + remaining)
        remaining -= close_at - open_at
    raise table.no_open_time(start)


def elapsed(calendar: BusinessCalendar, start: datetime, end: datetime) -> timedelta:
    """Return the open time between two instants.

    Args:
        calendar: The business calendar.
        start: The earlier instant; timezone-aware.
        end: The later instant; timezone-aware, not before ``start``.

    Returns:
        The open time in ``[start, end)``; zero when they are equal.

    Raises:
        ValueError: An instant is naive, or ``end`` is before ``start``.
    """
    low, high = _to_us(start, "start"), _to_us(end, "end")
    if high < low:
        raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
    table = _table(calendar)
    total = 0
    # Start a day early: where clocks go back across midnight, the previous date's hours can
    # end after `start`.
    day = table.local_date(low) - _ONE_DAY
    last = table.local_date(high)
    while day <= last:
        for open_at, close_at in table.spans(day):
            total += max(0, min(close_at, high) - max(open_at, low))
        day += _ONE_DAY
    return timedelta(microseconds=total)


def is_open(calendar: BusinessCalendar, at: datetime) -> bool:
    """Return whether the calendar is open at an instant (a closing instant is closed)."""
    table = _table(calendar)
    instant = _to_us(at, "at")
    day = table.local_date(instant)
    return any(
        open_at <= instant < close_at
        for spans_day in (day - _ONE_DAY, day)
        for open_at, close_at in table.spans(spans_day)
    )


def next_opening(calendar: BusinessCalendar, at: datetime) -> datetime:
    """Return ``at`` itself, in UTC, when open; otherwise the next opening.

    Raises:
        ValueError: ``at`` is naive, or the calendar has no open time ahead.
    """
    table = _table(calendar)
    instant = _to_us(at, "at")
    first = next(table.spans_after(instant), None)
    if first is None:
        raise table.no_open_time(at)
    _day, (open_at, _close_at) = first
    return _from_us(max(open_at, instant))


def standing_in(
    calendar: BusinessCalendar, *, days_of: date, on: date, days: int
) -> BusinessCalendar:
    """The calendar with the `days` days from `on` open as the days from `days_of` are.

    A run on other dates than the ones it stands for (the demo's year ahead, a back-test's
    replay) then keeps the hours of the days it plays: a holiday, a half day, the weekday.
    The days are set as special hours of the copy; every other day is as before.
    """
    special = dict(calendar.special_hours)
    for offset in range(days):
        played, there = on + timedelta(days=offset), days_of + timedelta(days=offset)
        hours = calendar.open_ranges(there)
        if hours != calendar.open_ranges(played):
            special[played] = list(hours)
    if special == calendar.special_hours:
        return calendar
    return calendar.model_copy(update={"special_hours": special})  # `_table` sees the copy


def _add_business_days(calendar: BusinessCalendar, start: datetime, days: int) -> datetime:
    table = _table(calendar)
    instant = _to_us(start, "start")
    first = next(table.spans_after(instant), None)
    if first is None:
        raise table.no_open_time(start)
    day, (open_at, _close_at) = first
    opening = max(open_at, instant)
    zone = _zone(table.timezone)
    local = _from_us(opening).astimezone(zone)
    time_of_day = _time_of_day_us(local)
    if local.fold:
        # The second pass of a repeated hour reads as the end of the repeat, so that a later
        # start never gets an earlier deadline.
        repeat = _offset_us(local.replace(fold=0)) - _offset_us(local)
        change = _clock_change(zone, opening - repeat, opening)
        time_of_day = _time_of_day_us(_from_us(change).astimezone(zone)) + repeat

    spans: tuple[_Span, ...] = ()
    for _ in range(SEARCH_LIMIT_DAYS):
        day += _ONE_DAY
        spans = table.spans(day)
        if spans:
            days -= 1
            if days == 0:
                break
    else:
        raise table.no_open_time(start)

    target = _local_to_us(table.timezone, day, time_of_day)
    deadline = spans[0][0]  # the day opens after that time of day: its first opening
    for open_at, close_at in spans:
        if open_at > target:
            break
        deadline = min(target, close_at)  # inside this range, or at its close if past it
    return _from_us(deadline)


@lru_cache(maxsize=64)
def _zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@lru_cache(maxsize=1 << 16)
def _steady_offset_us(timezone: str, ordinal: int) -> int | None:
    """Return a local date's UTC offset, or None when the clocks change during that date.

    Assumes at most one clock change per day, which holds for every zone in use.
    """
    zone = _zone(timezone)
    offsets = set()
    for day in (date.fromordinal(ordinal), date.fromordinal(ordinal + 1)):
        midnight = datetime(day.year, day.month, day.day, tzinfo=zone)
        offsets.add(_offset_us(midnight))
        offsets.add(_offset_us(midnight.replace(fold=1)))
    return offsets.pop() if len(offsets) == 1 else None


def _local_to_us(timezone: str, day: date, time_of_day_us: int) -> int:
    """Return the instant a local date and time of day stand for (see the module docstring)."""
    ordinal = day.toordinal()
    wall = (ordinal - _EPOCH_ORDINAL) * _DAY_US + time_of_day_us
    steady = _steady_offset_us(timezone, ordinal)
    if steady is not None:
        return wall - steady
    zone = _zone(timezone)
    local = datetime.combine(day, time(), tzinfo=zone) + timedelta(microseconds=time_of_day_us)
    first, second = _offset_us(local), _offset_us(local.replace(fold=1))
    if first >= second:  # an ordinary time, or a repeated one: its first occurrence
        return wall - first
    # A skipped time: the clocks jump past it at the change, which lies between its readings.
    return _clock_change(zone, wall - second, wall - first)


def _clock_change(zone: ZoneInfo, before: int, after: int) -> int:
    """Return when the UTC offset changes, given instants before and after a single change.

    Offsets change on whole seconds, so a bisection over seconds finds it in a dozen steps.
    """
    low, high = before // _US, -(-after // _US)
    offset_before = _offset_us(_from_us(low * _US).astimezone(zone))
    while high - low > 1:
        middle = (low + high) // 2
        if _offset_us(_from_us(middle * _US).astimezone(zone)) == offset_before:
            low = middle
        else:
            high = middle
    return high * _US


def _time_of_day_us(local: datetime) -> int:
    return ((local.hour * 60 + local.minute) * 60 + local.second) * _US + local.microsecond


def _offset_us(local: datetime) -> int:
    offset = local.utcoffset()
    assert offset is not None  # every ZoneInfo datetime has an offset
    return offset // _MICROSECOND


def _to_us(moment: datetime, what: str) -> int:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(
            f"{what} {moment.isoformat()} must be timezone-aware, e.g. 2026-03-02T09:00:00+00:00"
        )
    return (moment - _EPOCH) // _MICROSECOND


def _from_us(instant: int) -> datetime:
    return _EPOCH + timedelta(microseconds=instant)


def _check_ranges(calendar: str, where: str, ranges: list[OpenRange]) -> None:
    previous_end = 0
    for start, end in ranges:
        if not 0 <= start < end <= 1440:
            raise ValueError(
                f"calendar {calendar!r}: {where} has open range ({start}, {end}); a range is "
                "[start, end) in minutes from local midnight, 0 <= start < end <= 1440"
            )
        if start < previous_end:
            raise ValueError(
                f"calendar {calendar!r}: {where} open ranges must be sorted and must not overlap, "
                f"found {ranges}"
            )
        previous_end = end
