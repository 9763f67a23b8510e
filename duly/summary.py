"""The weekly summary a manager gets: attainment against the goal, who slipped, open breaches.

For one manager and one ISO week (`2026-W48`), over the teams they manage in org.yaml:

- per process their teams run: SLA attainment that week against the process's goal, beside
  the week before (`duly.reports.attainment`, the same figures as the dashboard);
- who slipped: reps of their teams below the goal that week, or worse than their own week
  before, over every visit counted for them (docs/language.md, "How duly counts");
- open breaches: their teams' tasks open right now past their due time, oldest first.

It is rendered as plain text and as HTML (for email), and queued on the manager's channels
through the notification outbox with the key `summary/<manager>/<week>`: each channel gets one
delivery per week, however often the summary is sent. `WeeklySummaryWorkflow`
(workflows/summary.py), whose id names the week, sends it once a week for every manager; the
worker's scheduler starts it on Mondays at 08:00 UTC (`duly.summary_schedule`); `duly summary`
prints (or sends) it.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field
from sqlmodel import Session, col, func, select

from duly.language.loader import Definitions
from duly.notify import render
from duly.notify.outbox import enqueue
from duly.notify.summary_message import pct, summary_message
from duly.reports import ReportQuery, attainment
from duly.store.models import Task
from duly.store.types import utc_now

WEEK = re.compile(r"^(\d{4})-W(\d{2})$")
BREACHES_LISTED = 10
KIND = "summary.weekly"


class SummaryError(ValueError):
    """A summary cannot be made as asked; the message says what was wrong."""


# --- weeks --------------------------------------------------------------------------------------


def parse_week(label: str) -> tuple[int, int]:
    """`2026-W48` as (2026, 48).

    Raises:
        SummaryError: Not an ISO week label, or no such week in that year.
    """
    match = WEEK.match(label.strip())
    if match is None:
        raise SummaryError(f"{label!r} is not an ISO week; write it like 2026-W48")
    year, week = int(match.group(1)), int(match.group(2))
    try:
        date.fromisocalendar(year, week, 1)
    except ValueError:
        raise SummaryError(f"{label!r}: {year} has no week {week}") from None
    return year, week


def week_label(day: date) -> str:
    """The ISO week a date is in, e.g. `2026-W48`."""
    year, week, _ = day.isocalendar()
    return f"{year}-W{week:02d}"


def last_week(now: datetime) -> str:
    """The last complete ISO week before `now` (in UTC): what a Monday summary reports on."""
    return week_label(now.astimezone(UTC).date() - timedelta(weeks=1))


def week_bounds(label: str, timezone: str) -> tuple[datetime, datetime]:
    """Monday 00:00 to the next Monday 00:00 of an ISO week in a time zone, as UTC instants."""
    year, week = parse_week(label)
    monday = date.fromisocalendar(year, week, 1)
    zone = ZoneInfo(timezone)

    def start(day: date) -> datetime:
        return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)

    return start(monday), start(monday + timedelta(weeks=1))


def previous(label: str) -> str:
    """The ISO week before a week."""
    year, week = parse_week(label)
    return week_label(date.fromisocalendar(year, week, 1) - timedelta(weeks=1))


# --- what a summary holds -----------------------------------------------------------------------


class ProcessLine(BaseModel):
    """One process for one of the manager's teams, that week and the week before."""

    process: str
    title: str
    team: str
    goal: float | None
    met: int
    breached: int
    attainment: float | None
    meets_goal: bool | None
    previous_attainment: float | None


class Slip(BaseModel):
    """A rep who slipped in one process: below the goal, or worse than their week before."""

    rep: str
    name: str
    process: str
    attainment: float
    previous_attainment: float | None
    goal: float | None
    reason: str


class OpenBreach(BaseModel):
    """A task of the manager's teams open right now past its due time."""

    task_id: str
    instance_id: str
    process: str
    title: str
    assignee: str | None
    due_at: datetime
    overdue_hours: float


class WeeklySummary(BaseModel):
    """One manager's weekly summary; `text()` and `html()` render it."""

    manager: str
    name: str
    week: str
    teams: list[str]
    processes: list[ProcessLine] = Field(default_factory=list)
    slipped: list[Slip] = Field(default_factory=list)
    open_breaches: list[OpenBreach] = Field(default_factory=list)
    open_breach_count: int = 0
    generated_at: datetime
    link: str | None = Field(default=None, description="the web app's address, for links")

    @property
    def subject(self) -> str:
        """The email subject line."""
        below = sum(1 for p in self.processes if p.meets_goal is False)
        state = f"{below} below goal" if below else "on goal"
        if not any(p.met + p.breached for p in self.processes):
            state = "no SLA work measured"
        return (
            f"Weekly summary {self.week}: {state}, {len(self.slipped)} slipped, "
            f"{self.open_breach_count} open breaches"
        )

    def text(self) -> str:
        """The summary as plain text (`duly.notify.summary_message`)."""
        return render.text(summary_message(self))

    def html(self) -> str:
        """The summary as an HTML email (inline styles, every value escaped)."""
        return render.html(summary_message(self))


_pct = pct


# --- building it --------------------------------------------------------------------------------


def managers(definitions: Definitions) -> list[str]:
    """Everyone who manages a team in org.yaml, in id order."""
    return sorted({team.manager for team in definitions.org.teams.values()})


def build_summary(
    session: Session,
    definitions: Definitions,
    manager: str,
    week: str | None = None,
    *,
    now: datetime | None = None,
    link: str | None = None,
) -> WeeklySummary:
    """Work out one manager's summary of one week from the fact table and the open tasks.

    Args:
        session: A session on duly's database.
        definitions: The loaded definitions (teams, processes, goals, calendars).
        manager: The manager's user id.
        week: The ISO week, e.g. `2026-W48`; default the last complete week before `now`.
        now: When the summary is made (open breaches are judged at it); default now.
        link: The web app's address, for links to instances.

    Raises:
        SummaryError: The user manages no team, or the week is not an ISO week.
    """
    now = (now or utc_now()).astimezone(UTC)
    week = week or last_week(now)
    parse_week(week)
    teams = sorted(t for t, spec in definitions.org.teams.items() if spec.manager == manager)
    user = definitions.org.users.get(manager)
    if user is None or not teams:
        known = ", ".join(managers(definitions)) or "none"
        raise SummaryError(f"{manager!r} manages no team in org.yaml (managers: {known})")
    summary = WeeklySummary(
        manager=manager, name=user.name, week=week, teams=teams, generated_at=now, link=link
    )
    names = {uid: spec.name for uid, spec in definitions.org.users.items()}
    before = previous(week)
    for name, process in sorted(definitions.processes.items()):
        goal_zone = process.calendar.timezone
        this = week_bounds(week, goal_zone)
        last = week_bounds(before, goal_zone)
        for team in teams:
            query = ReportQuery(process=name, team=team, by="rep", since=this[0], until=this[1])
            now_report = attainment(session, query, definitions=definitions, now=now)
            earlier = attainment(
                session,
                query.model_copy(update={"since": last[0], "until": last[1]}),
                definitions=definitions,
                now=now,
            )
            total = now_report.total
            if not total.measured and not earlier.total.measured:
                continue  # this team does not run this process
            goal = now_report.scope.goal
            summary.processes.append(
                ProcessLine(
                    process=name,
                    title=process.spec.title or name,
                    team=team,
                    goal=goal,
                    met=total.met,
                    breached=total.breached,
                    attainment=total.attainment,
                    meets_goal=total.meets_goal,
                    previous_attainment=earlier.total.attainment,
                )
            )
        summary.slipped += _slipped(
            session, definitions, name, teams, (this, last), now=now, names=names
        )
    summary.slipped.sort(key=lambda s: (s.attainment, s.rep, s.process))
    overdue = (
        col(Task.status) == "open",
        col(Task.team).in_(teams),
        col(Task.due_at).is_not(None),
        col(Task.due_at) < now,
    )
    summary.open_breach_count = int(session.exec(select(func.count()).where(*overdue)).one())
    for task in session.exec(
        select(Task).where(*overdue).order_by(col(Task.due_at)).limit(BREACHES_LISTED)
    ):
        assert task.due_at is not None
        summary.open_breaches.append(
            OpenBreach(
                task_id=task.id,
                instance_id=task.instance_id,
                process=task.process,
                title=task.title,
                assignee=task.assignee,
                due_at=task.due_at,
                overdue_hours=round((now - task.due_at).total_seconds() / 3600, 1),
            )
        )
    return summary


def _slipped(
    session: Session,
    definitions: Definitions,
    process: str,
    teams: list[str],
    weeks: tuple[tuple[datetime, datetime], tuple[datetime, datetime]],
    *,
    now: datetime,
    names: dict[str, str],
) -> list[Slip]:
    """The manager's reps who slipped in a process that week (docs/language.md, "Who slipped").

    A rep of one of the teams slipped when their attainment that week, over every visit
    counted for them whatever team it counted for, is below the goal, or lower than their own
    the week before.
    """
    members = sorted({m for team in teams for m in definitions.org.teams[team].members})
    if not members:
        return []
    (since, until), (before_since, before_until) = weeks
    query = ReportQuery(
        process=process,
        by="rep",
        since=since,
        until=until,
        visible_reps=tuple(members),
        visible_teams=(),
    )
    week = attainment(session, query, definitions=definitions, now=now)
    earlier = attainment(
        session,
        query.model_copy(update={"since": before_since, "until": before_until}),
        definitions=definitions,
        now=now,
    )
    goal = week.scope.goal
    before_by_rep = {row.key: row.attainment for row in earlier.rows}
    slipped = []
    for row in week.rows:
        # a manager who took over late tasks is not one of the reps who slipped
        if row.key not in members or row.attainment is None:
            continue
        prior = before_by_rep.get(row.key)
        if goal is not None and row.attainment < goal - 1e-9:
            reason = f"below the {_pct(goal)} goal"
        elif prior is not None and row.attainment < prior - 1e-9:
            reason = f"down from {_pct(prior)} the week before"
        else:
            continue
        slipped.append(
            Slip(
                rep=row.key,
                name=names.get(row.key, row.key),
                process=process,
                attainment=row.attainment,
                previous_attainment=prior,
                goal=goal,
                reason=reason,
            )
        )
    return slipped


def queue_summary(session: Session, summary: WeeklySummary) -> list[str]:
    """Queue the summary on the manager's channels, once per channel and week.

    Call it inside a write transaction. The key is `summary/<manager>/<week>`, so a second
    call for the same week (a retried activity, a second trigger) queues nothing.

    Returns:
        The channels queued by this call.
    """
    return enqueue(
        session=session,
        key=summary_key(summary.manager, summary.week),
        user=summary.manager,
        kind=KIND,
        subject=summary.subject,
        body=summary.text(),
        html=summary.html(),
        slack=render.slack(summary_message(summary)),
        payload=summary.model_dump(mode="json"),
    )


def summary_key(manager: str, week: str) -> str:
    """The outbox key of a manager's summary of a week."""
    return f"summary/{manager}/{week}"
