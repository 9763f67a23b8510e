"""What reports are asked (`ReportQuery`) and what they answer (one pydantic model per report).

Every result carries the resolved period, its weeks and the goal it was measured against, so a
caller (API, CLI, dashboard, weekly summary) can show the figures without asking again.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Grouping = Literal["rep", "team", "step", "week"]
"""What a report's rows are per: a rep (assignee), a team, a step, or an ISO week."""

GROUPINGS: tuple[Grouping, ...] = ("rep", "team", "step", "week")
DEFAULT_WEEKS = 8
MAX_WEEKS = 520
Trend = Literal["improving", "steady", "slipping", "unknown"]


class ReportQuery(BaseModel):
    """Which step visits a report measures, and what its rows are per.

    Filters combine with AND. The period is `since`/`until`, or the last `weeks` weeks (the
    current one included); with neither, the last 8 weeks. Weeks are ISO weeks (Monday to
    Sunday) in the process calendar's time zone when `process` names a known process, in UTC
    otherwise; a visit counts in the week it was opened.

    `visible_teams`/`visible_reps` restrict the visits to those a user may see (a visit counts
    for its team and its assignee); the API sets them from the user's role, callers acting for
    the system leave them None.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    process: str | None = Field(default=None, max_length=100)
    version: int | None = Field(default=None, ge=1)
    step: str | None = Field(default=None, max_length=100)
    team: str | None = Field(default=None, max_length=100)
    rep: str | None = Field(default=None, max_length=100)
    since: datetime | None = Field(default=None, description="from this moment on (inclusive)")
    until: datetime | None = Field(default=None, description="before this moment (exclusive)")
    weeks: int | None = Field(default=None, ge=1, le=MAX_WEEKS)
    by: Grouping | None = Field(default=None, description="rows per rep, team, step or week")
    visible_teams: tuple[str, ...] | None = None
    visible_reps: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _one_period(self) -> ReportQuery:
        if self.weeks is not None and (self.since is not None or self.until is not None):
            raise ValueError("give either weeks or since/until, not both")
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise ValueError(f"{name} needs a time zone, e.g. 2026-11-02T00:00:00Z")
        if self.since and self.until and self.since >= self.until:
            raise ValueError("since must be before until")
        return self


class Week(BaseModel):
    """One ISO week of a report's period, its bounds as UTC instants."""

    start: date = Field(description="the Monday, in the report's time zone")
    label: str = Field(description='ISO week, e.g. "2026-W47"')
    starts_at: datetime
    ends_at: datetime


class ReportScope(BaseModel):
    """What a report measured: the filters, the period and its weeks, the goal."""

    process: str | None = None
    version: int | None = None
    step: str | None = None
    team: str | None = None
    rep: str | None = None
    by: Grouping | None = None
    since: datetime
    until: datetime
    timezone: str = Field(description="the zone weeks are counted in")
    weeks: list[Week] = Field(default_factory=list)
    goal: float | None = Field(default=None, description="the process goal's attainment, 0..1")
    now: datetime


class Report(BaseModel):
    """Common to every report: its scope, and a flat table for CSV and the CLI."""

    scope: ReportScope

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """Column names and rows, one per row of the report (for CSV and plain text)."""
        raise NotImplementedError


# --- attainment ---------------------------------------------------------------------------------


class AttainmentRow(BaseModel):
    """SLA attainment of one group (or of everything, `key` None).

    `breached` counts closed visits that missed their SLA plus tasks still open past their due
    time (`open_overdue`); `attainment` is met / (met + breached), None with nothing measured.
    """

    key: str | None = Field(description="the rep, team, step or week label; None: all")
    met: int = 0
    breached: int = 0
    open_overdue: int = 0
    measured: int = Field(default=0, description="met + breached")
    attainment: float | None = None
    meets_goal: bool | None = None
    escalated: int = Field(default=0, description="closed visits that reached a rung")
    rungs: dict[int, int] = Field(
        default_factory=dict, description="closed visits by the highest rung reached (1 = first)"
    )


class AttainmentReport(Report):
    """SLA attainment against the goal, breaches and escalation rungs, per group and overall."""

    total: AttainmentRow
    rows: list[AttainmentRow]

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """See `Report.table`."""
        rungs = sorted({r for row in [*self.rows, self.total] for r in row.rungs})
        headers = [
            self.scope.by or "scope",
            "met",
            "breached",
            "open_overdue",
            "measured",
            "attainment",
            "goal",
            "meets_goal",
            "escalated",
            *(f"rung_{r}" for r in rungs),
        ]
        body = [
            [
                row.key if row.key is not None else "all",
                row.met,
                row.breached,
                row.open_overdue,
                row.measured,
                row.attainment,
                self.scope.goal,
                row.meets_goal,
                row.escalated,
                *(row.rungs.get(r, 0) for r in rungs),
            ]
            for row in [*self.rows, self.total]
        ]
        return headers, body


# --- durations ----------------------------------------------------------------------------------


class DurationRow(BaseModel):
    """Business time to complete the tasks of one group: nearest-rank percentiles, seconds."""

    key: str | None
    count: int = 0
    mean_seconds: float | None = None
    p50_seconds: float | None = None
    p90_seconds: float | None = None


class DurationReport(Report):
    """Time to complete tasks in business time (the process calendar's open hours), p50/p90."""

    total: DurationRow
    rows: list[DurationRow]

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """See `Report.table`."""
        headers = [self.scope.by or "scope", "count", "mean_seconds", "p50_seconds", "p90_seconds"]
        body = [
            [
                row.key if row.key is not None else "all",
                row.count,
                row.mean_seconds,
                row.p50_seconds,
                row.p90_seconds,
            ]
            for row in [*self.rows, self.total]
        ]
        return headers, body


# --- outcomes and funnel -----------------------------------------------------------------------


class OutcomeCount(BaseModel):
    """How often one outcome closed a step's visits, and its share of them."""

    outcome: str | None = Field(description="None: closed without one (e.g. an end event)")
    count: int
    share: float


class StepOutcomes(BaseModel):
    """The outcome mix of one step (within one group when the report is grouped)."""

    key: str | None = Field(default=None, description="the group; None when not grouped")
    step: str
    visits: int
    outcomes: list[OutcomeCount]


class OutcomeReport(Report):
    """Outcome mix per step (e.g. reached / voicemail / lost)."""

    rows: list[StepOutcomes]

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """See `Report.table`; grouped by step, the step column is the group's."""
        if self.scope.by == "step":
            return ["step", "outcome", "count", "share"], [
                [row.step, o.outcome, o.count, o.share] for row in self.rows for o in row.outcomes
            ]
        headers = [self.scope.by or "scope", "step", "outcome", "count", "share"]
        body = [
            [row.key if row.key is not None else "all", row.step, o.outcome, o.count, o.share]
            for row in self.rows
            for o in row.outcomes
        ]
        return headers, body


class FunnelStep(BaseModel):
    """One step of the funnel: the instances that reached it, of those that started."""

    step: str
    instances: int = Field(description="instances of the base that reached this step")
    visits: int
    open: int = Field(default=0, description="tasks of this step open right now")
    share: float | None = Field(description="instances / instances started (never above 1)")


class FunnelReport(Report):
    """Step by step, how far the instances that started in the period got.

    `started` is the base: the instances of the process that started in the period (in the
    rep/team scope); every step's share is of it.
    """

    started: int = Field(default=0, description="instances started in the period, in scope")
    steps: list[FunnelStep]

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """See `Report.table`: a first row for the instances started, then one per step."""
        return ["step", "instances", "visits", "open", "share"], [
            ["(started)", self.started, None, None, 1.0 if self.started else None],
            *([s.step, s.instances, s.visits, s.open, s.share] for s in self.steps),
        ]


# --- backlog ------------------------------------------------------------------------------------


class BacklogRow(BaseModel):
    """Open tasks of one group right now, and how many are past due."""

    key: str | None
    open: int = 0
    overdue: int = 0
    oldest_opened_at: datetime | None = None


class BacklogReport(Report):
    """Backlog and overdue right now (open tasks; the period does not apply)."""

    total: BacklogRow
    rows: list[BacklogRow]

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """See `Report.table`."""
        return [self.scope.by or "scope", "open", "overdue", "oldest_opened_at"], [
            [r.key if r.key is not None else "all", r.open, r.overdue, r.oldest_opened_at]
            for r in [*self.rows, self.total]
        ]


# --- consistency --------------------------------------------------------------------------------


class WeekAttainment(BaseModel):
    """A rep's attainment in one week they were active in."""

    week: str
    met: int
    breached: int
    attainment: float
    meets_goal: bool | None


class RepConsistency(BaseModel):
    """How consistently one rep meets the goal, week by week.

    `trend` is the least-squares slope of weekly attainment against the week (points per
    week): above +2 points a week `improving`, below -2 `slipping`, else `steady`; `unknown`
    with fewer than two active weeks.
    """

    rep: str
    team: str | None = Field(description="the team most of their visits counted for")
    weeks_active: int
    weeks_met: int | None = Field(description="None without a goal")
    attainment: float | None = Field(description="over the whole period")
    slope_per_week: float | None
    trend: Trend
    weeks: list[WeekAttainment]


class TeamSpread(BaseModel):
    """How attainment spreads across one team's reps over the period (population std dev)."""

    team: str
    reps: int
    min: float | None
    max: float | None
    stdev: float | None
    attainment: float | None = Field(description="the team's own, over all its visits")


class ConsistencyReport(Report):
    """Consistency: per rep, the weeks meeting the goal of the weeks active, and the trend.

    Per team, the spread of attainment across its reps.
    """

    reps: list[RepConsistency]
    teams: list[TeamSpread]

    def table(self) -> tuple[list[str], list[list[Any]]]:
        """See `Report.table`: one row per rep, weekly attainment as `label=value` pairs."""
        headers = [
            "rep",
            "team",
            "weeks_active",
            "weeks_met",
            "attainment",
            "trend",
            "slope_per_week",
            "weeks",
        ]
        body = [
            [
                r.rep,
                r.team,
                r.weeks_active,
                r.weeks_met,
                r.attainment,
                r.trend,
                r.slope_per_week,
                " ".join(f"{w.week}={w.attainment:.3f}" for w in r.weeks),
            ]
            for r in self.reps
        ]
        return headers, body
