"""Reports over the step-outcome fact table: how consistently the processes are run.

Every report takes a session (SQLite or PostgreSQL), a `ReportQuery` (filters, period,
grouping) and, as keywords, the loaded `definitions` (for the goal, the calendar's time zone
and the order of steps) and `now`. The database does the filtering, grouping and counting;
Python only finishes percentiles over the few rows they narrow to, and the arithmetic over
grouped rows.

    from duly.reports import ReportQuery, attainment
    report = attainment(session, ReportQuery(process="quote-follow-up", by="rep", weeks=8),
                        definitions=definitions)

Weeks are ISO weeks (Monday 00:00 to Monday 00:00) in the time zone of the process's
calendar when the query names a process, in UTC otherwise; a visit counts in the week it was
opened. `to_csv` and `to_text` render any report.
"""

from duly.reports.attainment import attainment
from duly.reports.backlog import backlog
from duly.reports.consistency import consistency
from duly.reports.durations import durations
from duly.reports.export import to_csv, to_text
from duly.reports.filters import ReportError, resolve
from duly.reports.models import (
    GROUPINGS,
    AttainmentReport,
    AttainmentRow,
    BacklogReport,
    BacklogRow,
    ConsistencyReport,
    DurationReport,
    DurationRow,
    FunnelReport,
    FunnelStep,
    Grouping,
    OutcomeCount,
    OutcomeReport,
    RepConsistency,
    Report,
    ReportQuery,
    ReportScope,
    StepOutcomes,
    TeamSpread,
    Week,
    WeekAttainment,
)
from duly.reports.outcomes import funnel, outcome_mix

REPORTS = {
    "attainment": attainment,
    "durations": durations,
    "outcomes": outcome_mix,
    "funnel": funnel,
    "backlog": backlog,
    "consistency": consistency,
}
"""Every report by name (the API's and the CLI's names)."""

__all__ = [
    "GROUPINGS",
    "REPORTS",
    "AttainmentReport",
    "AttainmentRow",
    "BacklogReport",
    "BacklogRow",
    "ConsistencyReport",
    "DurationReport",
    "DurationRow",
    "FunnelReport",
    "FunnelStep",
    "Grouping",
    "OutcomeCount",
    "OutcomeReport",
    "RepConsistency",
    "Report",
    "ReportError",
    "ReportQuery",
    "ReportScope",
    "StepOutcomes",
    "TeamSpread",
    "Week",
    "WeekAttainment",
    "attainment",
    "backlog",
    "consistency",
    "durations",
    "funnel",
    "outcome_mix",
    "resolve",
    "to_csv",
    "to_text",
]
