"""Reports as CSV and as plain-text tables."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from duly.reports.models import Report
from duly.tables import table


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 6)
    return value


def to_csv(report: Report) -> str:
    """The report's table as CSV (a header row, then one line per row; empty cells for None)."""
    headers, rows = report.table()
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(headers)
    for row in rows:
        writer.writerow([_csv_cell(value) for value in row])
    return out.getvalue()


def to_text(report: Report) -> str:
    """The report's table as aligned plain text, ratios shown as percentages."""
    headers, rows = report.table()
    shown = [
        [
            f"{value:.1%}"
            if isinstance(value, float) and name in _RATIOS
            else round(value, 1)
            if isinstance(value, float)
            else value
            for name, value in zip(headers, row, strict=True)
        ]
        for row in rows
    ]
    return table(headers, shown, empty="no data")


_RATIOS = {"attainment", "goal", "share"}
