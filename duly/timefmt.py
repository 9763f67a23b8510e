"""How duly shows a moment to people, in one place: pages, emails, Slack, the CLI.

One rule: a process's times are shown in its calendar's zone, with the zone's abbreviation
("2026-12-01 11:46 EST"), unless the reader has a `timezone:` of their own in org.yaml; then
in theirs, still labelled. Machine formats (CSV, JSON) stay ISO 8601 with an offset (`iso`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

FORMAT = "%Y-%m-%d %H:%M %Z"
"""A moment for people: date, minutes and the zone's abbreviation."""


def zone(name: str | None) -> tzinfo | None:
    """The IANA zone called `name`; None when unset or unknown (never an exception)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def reader_zone(process_zone: str | tzinfo | None, user_zone: str | None = None) -> tzinfo:
    """The zone a reader sees a process's times in: theirs if they set one, else the process's.

    Args:
        process_zone: The process's calendar zone (a name or a zone); UTC when unknown.
        user_zone: The reader's `timezone:` from org.yaml, if any.
    """
    own = zone(user_zone)
    if own is not None:
        return own
    if isinstance(process_zone, tzinfo):
        return process_zone
    return zone(process_zone) or UTC


def chooser(
    process_zones: Mapping[str, str], user_zone: str | None = None
) -> Callable[[str | None], tzinfo]:
    """`zone_for(process)` for one reader: their own zone, else the process's calendar zone.

    Args:
        process_zones: Each process's calendar zone, by process name.
        user_zone: The reader's `timezone:` from org.yaml, if any.
    """

    def zone_for(process: str | None) -> tzinfo:
        return reader_zone(process_zones.get(process or ""), user_zone)

    return zone_for


def local(moment: datetime | None, where: tzinfo, *, empty: str = "—") -> str:
    """`moment` as people read it in zone `where`: `2026-12-01 11:46 EST`."""
    if moment is None:
        return empty
    if moment.tzinfo is None:  # stored times are UTC; a naive one came from SQLite
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(where).strftime(FORMAT)


def iso(moment: datetime | None) -> str:
    """`moment` for machines: ISO 8601 with its offset (UTC), `""` when there is none."""
    if moment is None:
        return ""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat()


def duration(seconds: float | None, *, signed: bool = False) -> str:
    """`3h 05m`, `2d 4h`, `45s`: a duration as people read it (absolute unless `signed`)."""
    if seconds is None:
        return "—"
    sign = "-" if signed and seconds < 0 else ""
    left = int(abs(seconds))
    days, left = divmod(left, 86400)
    hours, left = divmod(left, 3600)
    minutes, secs = divmod(left, 60)
    if days:
        text = f"{days}d {hours}h"
    elif hours:
        text = f"{hours}h {minutes:02d}m"
    elif minutes:
        text = f"{minutes}m {secs:02d}s"
    else:
        text = f"{secs}s"
    return sign + text
