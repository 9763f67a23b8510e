"""Plain-text tables and short times for the command line's people-facing output."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

MAX_CELL = 60


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, empty: str = "") -> str:
    """Columns padded to their widest cell; long cells are cut with '…'.

    Args:
        headers: The column names.
        rows: The cells; None shows as '-'.
        empty: What to print instead when there are no rows.
    """
    if not rows:
        return empty
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    lines = [headers, *cells]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    )


def _cell(value: object) -> str:
    if value is None:
        return "-"
    text = when(value) if isinstance(value, datetime) else str(value)
    text = " ".join(text.split())  # one line per row
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def when(moment: datetime) -> str:
    """A moment in UTC to the minute: `2026-03-02 14:05Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%MZ")


def span(seconds: float | None) -> str:
    """A duration in days/hours/minutes (`1d 2h`, `3h 05m`, `12m`); `-` for None.

    Negative durations read as overdue: `overdue 45m`.
    """
    if seconds is None:
        return "-"
    prefix = "overdue " if seconds < 0 else ""
    minutes = int(abs(seconds) // 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    if days:
        return f"{prefix}{days}d {hours}h"
    if hours:
        return f"{prefix}{hours}h {minutes:02d}m"
    return f"{prefix}{minutes}m"
