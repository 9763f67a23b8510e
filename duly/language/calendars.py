"""Compile a calendar file into a BusinessCalendar with its holiday dates resolved."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from duly.language.business_time import BusinessCalendar
from duly.language.errors import Problem
from duly.language.model import CalendarSpec
from duly.language.source import Source
from duly.language.validation import did_you_mean

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_RANGE = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


def parse_days(text: str) -> list[int]:
    """`mon-fri`, `sat`, `mon,wed` -> weekday numbers (Monday is 0)."""
    days: list[int] = []
    for part in text.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in WEEKDAYS or (last and last not in WEEKDAYS):
            raise ValueError(f"'{text}' is not a day or range of days; write e.g. mon-fri or sat")
        start, end = WEEKDAYS.index(first), WEEKDAYS.index(last or first)
        if end < start:
            raise ValueError(f"'{text}' runs backwards; write the earlier day first, e.g. mon-fri")
        days.extend(range(start, end + 1))
    return days


def parse_ranges(value: str | list[str]) -> list[tuple[int, int]]:
    """`"09:00-12:00, 13:00-17:00"` (or a list, or `closed`) -> sorted minute ranges."""
    parts = value if isinstance(value, list) else value.split(",")
    ranges: list[tuple[int, int]] = []
    written: dict[tuple[int, int], str] = {}
    for part in (p.strip() for p in parts):
        if part.lower() == "closed":
            continue
        match = _RANGE.match(part)
        if not match:
            raise ValueError(f"'{part}' is not a range of hours; write e.g. 09:00-17:00")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        start, end = h1 * 60 + m1, h2 * 60 + m2
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or end > 24 * 60:
            raise ValueError(f"'{part}' is not a time of day between 00:00 and 24:00")
        if end <= start:
            raise ValueError(f"'{part}' ends before it starts")
        ranges.append((start, end))
        written[(start, end)] = part
    ranges.sort()
    for earlier, later in zip(ranges, ranges[1:], strict=False):
        if later[0] < earlier[1]:
            raise ValueError(
                f"opening hours '{written[earlier]}' and '{written[later]}' overlap; "
                "ranges in a day must not overlap"
            )
    return ranges


def parse_date(text: str) -> date:
    """An ISO date, with an error an admin understands."""
    try:
        return date.fromisoformat(str(text))
    except ValueError:
        raise ValueError(f"'{text}' is not a date; write YYYY-MM-DD, e.g. 2026-12-24") from None


def _holiday_place_problem(country: str, subdivision: str | None, source: Source) -> Problem | None:
    """Which of country and subdivision the `holidays` package does not know, if either."""
    countries = holidays.list_supported_countries()
    if country not in countries:
        hint = did_you_mean(country.upper(), list(countries))
        return source.problem(
            ("holidays", "country"),
            f"no public holidays known for country '{country}'; write an ISO 3166 code such "
            f"as US or DE{hint}",
        )
    known = sorted(countries[country])
    if subdivision is None or subdivision in known:
        return None
    hint = (
        did_you_mean(str(subdivision).upper(), known) or f" (known: {', '.join(known) or 'none'})"
    )
    return source.problem(
        ("holidays", "subdivision"),
        f"country {country} has no subdivision '{subdivision}'{hint}",
    )


def holiday_years(today: date) -> range:
    """Years whose public holidays a compiled calendar carries: last year to five years on."""
    return range(today.year - 1, today.year + 6)


def compile_calendar(
    spec: CalendarSpec, source: Source, years: Iterable[int]
) -> tuple[BusinessCalendar | None, list[Problem]]:
    """Resolve a calendar's weekly hours, holidays and special days; every problem located."""
    problems: list[Problem] = []
    try:
        ZoneInfo(spec.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(
            source.problem(
                ("timezone",),
                f"unknown time zone '{spec.timezone}'; write an IANA name like America/New_York",
            )
        )
    weekly: list[list[tuple[int, int]]] = [[] for _ in WEEKDAYS]
    seen: dict[int, str] = {}
    hours_unreadable = False
    for key, value in spec.hours.items():
        try:
            days = parse_days(key)
        except ValueError as exc:
            problems.append(source.problem(("hours", key), str(exc), key=True))
            hours_unreadable = True
            continue
        try:
            ranges = parse_ranges(value)
        except ValueError as exc:
            problems.append(source.problem(("hours", key), str(exc)))
            hours_unreadable = True
            continue
        for day in days:
            if day in seen:
                problems.append(
                    source.problem(
                        ("hours", key),
                        f"{WEEKDAYS[day]} is already given by '{seen[day]}'",
                        key=True,
                    )
                )
            seen[day] = key
            weekly[day] = ranges
    if not any(weekly) and not hours_unreadable:
        problems.append(source.problem(("hours",), "the calendar is never open; give some hours"))

    closed: set[date] = set()
    holiday_spec = spec.holidays
    if holiday_spec.country:
        # ask the package only about places it lists: other names reach its internals
        # (`country: HolidayBase` would "work", `country: __init__` would crash)
        place = _holiday_place_problem(holiday_spec.country, holiday_spec.subdivision, source)
        if place is not None:
            problems.append(place)
        else:
            found = holidays.country_holidays(
                holiday_spec.country, subdiv=holiday_spec.subdivision, years=list(years)
            )
            closed.update(found.keys())
    elif holiday_spec.subdivision:
        problems.append(
            source.problem(("holidays", "subdivision"), "a subdivision needs a country")
        )
    for field, add in (("extra", True), ("except", False)):
        for index, text in enumerate(getattr(holiday_spec, "extra" if add else "except_")):
            try:
                when = parse_date(text)
            except ValueError as exc:
                problems.append(source.problem(("holidays", field, index), str(exc)))
                continue
            if add:
                closed.add(when)
            else:
                closed.discard(when)

    special: dict[date, list[tuple[int, int]]] = {}
    for text, value in spec.special_hours.items():
        try:
            special[parse_date(text)] = parse_ranges(value)
        except ValueError as exc:
            problems.append(source.problem(("special_hours", text), str(exc)))
    if problems:
        return None, problems
    calendar = BusinessCalendar(
        name=spec.calendar,
        timezone=spec.timezone,
        weekly=weekly,
        closed_dates=sorted(closed),
        special_hours=special,
    )
    return calendar, []
