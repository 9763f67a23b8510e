"""When an event happened: the check every way in (API, CLI, sources, import) applies.

An event may say when it happened at the source (`occurred_at`); SLA clocks count from that
instant. It must carry an offset (a naive time could be any zone's), and may not lie in the
future by more than a small clock skew between the sender and duly.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from duly.settings import get_settings


def check_occurred_at(
    value: datetime, *, now: datetime | None = None, skew_seconds: int | None = None
) -> datetime:
    """Accept an event's occurred time, or say why not.

    Args:
        value: The time the sender gave.
        now: The current time (UTC); the wall clock when not given.
        skew_seconds: How far in the future is still accepted (clock skew);
            `DULY_OCCURRED_AT_SKEW_SECONDS` when not given.

    Returns:
        The time in UTC.

    Raises:
        ValueError: It has no offset, or it is further in the future than the skew allows.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"occurred_at {value.isoformat()} has no offset: write it with one, e.g. "
            f"{value.isoformat()}Z or {value.isoformat()}-05:00"
        )
    skew = get_settings().occurred_at_skew_seconds if skew_seconds is None else skew_seconds
    now = now or datetime.now(UTC)
    ahead = value - now
    if ahead > timedelta(seconds=skew):
        raise ValueError(
            f"occurred_at {value.isoformat()} is {_span(ahead)} in the future (now is "
            f"{now.isoformat(timespec='seconds')}; at most {skew} seconds of clock skew is "
            "accepted): check the sender's clock and time zone"
        )
    return value.astimezone(UTC)


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} hours"
    if seconds >= 60:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"
