"""The dashboard: how consistently a process is run, week by week, for the people a user sees.

One page, `/dashboard`, for one process (and optionally one team) over the last N weeks:

- SLA attainment against the process's goal, per week (an SVG chart, `duly.charts`);
- per rep: attainment, the weeks meeting the goal of the weeks active, the trend, median time;
- the funnel step by step and the outcome mix of each task step;
- the breaches: tasks open past due now, then the visits that missed their SLA, each linking
  to its instance;
- CSV downloads of every report with the same filters (`/dashboard/<report>.csv`: the JSON
  API's `/api/reports/<report>.csv` answers the same CSV to a bearer token; these answer it to
  the signed-in browser).

Every figure comes from the reports (`duly.reports`) through `duly.services.reports`, so a
user sees what the API would show them: a rep their own work, a manager their teams', an admin
everything; asking for a team outside one's own is refused with the service's message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import false, or_, true
from sqlmodel import Session, col, func, select

from duly.api.web.render import context_of, render
from duly.api.web.session import WebUser
from duly.charts import (
    FunnelBar,
    OutcomeSlice,
    WeekBar,
    WeekDot,
    attainment_chart,
    declared_outcomes,
    funnel_chart,
    outcome_chart,
    week_dots,
)
from duly.language.loader import Definitions
from duly.reports import (
    AttainmentReport,
    BacklogReport,
    ConsistencyReport,
    DurationReport,
    FunnelReport,
    OutcomeReport,
    ReportQuery,
)
from duly.reports.stages import stage_funnel
from duly.services.auth import Principal
from duly.services.errors import Invalid
from duly.services.reports import ReportName, report_csv, run_report, scoped
from duly.store.models import Instance, StepFact, Task
from duly.store.types import utc_now

router = APIRouter(include_in_schema=False)

WEEK_CHOICES = (4, 6, 8, 12, 26)
DEFAULT_WEEKS = 8
BREACHES_SHOWN = 12
EXPORTS: tuple[tuple[ReportName, str], ...] = (
    ("attainment", "Attainment by rep"),
    ("consistency", "Consistency"),
    ("durations", "Durations by step"),
    ("outcomes", "Outcomes"),
    ("funnel", "Funnel"),
    ("backlog", "Backlog"),
)
# What each CSV is grouped by, as the page shows it
EXPORT_BY: dict[str, str | None] = {"attainment": "rep", "durations": "step", "backlog": "rep"}


@dataclass(frozen=True)
class Filters:
    """The dashboard's filters, checked."""

    process: str
    team: str | None
    weeks: int

    def query(self, by: Any = None) -> ReportQuery:
        """A report query with these filters."""
        return ReportQuery(
            process=self.process,
            team=self.team,
            weeks=self.weeks,
            by=by,
        )

    def params(self, **extra: Any) -> str:
        """The filters as a query string (for links)."""
        values: dict[str, Any] = {"process": self.process, "weeks": self.weeks}
        if self.team:
            values["team"] = self.team
        values.update({k: v for k, v in extra.items() if v is not None})
        return urlencode(values)


def teams_for(user: Principal, definitions: Definitions) -> list[str]:
    """The teams a user may filter by: every team for an admin, a manager's own, none for reps."""
    if user.is_admin:
        return sorted(definitions.org.teams)
    return sorted(user.manages)


def _filters(
    session: Session,
    user: Principal,
    definitions: Definitions,
    process: str | None,
    team: str | None,
    weeks: int | None,
) -> Filters:
    if not definitions.processes:
        raise Invalid("no processes are defined yet: add one under definitions/processes/")
    if process and process not in definitions.processes:
        known = ", ".join(sorted(definitions.processes))
        raise Invalid(f"no process '{process}' (known: {known})")
    chosen = process or _busiest_process(session, user, definitions)
    return Filters(
        process=chosen,
        team=team or None,
        weeks=weeks if weeks in WEEK_CHOICES else DEFAULT_WEEKS,
    )


def _busiest_process(session: Session, user: Principal, definitions: Definitions) -> str:
    """The process with the most visits the user may see (the first by name when none)."""
    query = scoped(user, ReportQuery())
    rows = session.exec(
        select(StepFact.process, func.count())
        .where(_visible(query), col(StepFact.process).in_(list(definitions.processes)))
        .group_by(StepFact.process)
    ).all()
    if rows:
        return str(max(rows, key=lambda row: (row[1], row[0]))[0])
    return sorted(definitions.processes)[0]


def _visible(query: ReportQuery) -> Any:
    """The visits a scoped query may see, as a WHERE condition on the fact table."""
    if query.visible_teams is None and query.visible_reps is None:
        return true()
    terms: list[Any] = []
    if query.visible_teams:
        terms.append(col(StepFact.team).in_(query.visible_teams))
    if query.visible_reps:
        terms.append(col(StepFact.assignee).in_(query.visible_reps))
    return or_(*terms) if terms else false()


def _visible_tasks(query: ReportQuery) -> Any:
    if query.visible_teams is None and query.visible_reps is None:
        return true()
    terms: list[Any] = []
    if query.visible_teams:
        terms.append(col(Task.team).in_(query.visible_teams))
    if query.visible_reps:
        terms.append(col(Task.assignee).in_(query.visible_reps))
    return or_(*terms) if terms else false()


def slope_text(slope: float | None) -> str:
    """A trend as the slope it is, in attainment points per week: "+3 pts/wk", "–" unknown."""
    if slope is None:
        return "–"
    points = round(slope)
    if points == 0:
        return "±0 pts/wk"
    return f"{points:+d} pts/wk"


@dataclass(frozen=True)
class Breach:
    """A line of the breach list: an open task past due, or a visit that missed its SLA."""

    instance_id: str
    business_key: str
    step: str
    assignee: str | None
    due_at: datetime | None
    closed_at: datetime | None
    breached_at: datetime | None
    open: bool
    outcome: str | None = None


def breaches(
    session: Session, user: Principal, filters: Filters, since: datetime, now: datetime
) -> tuple[list[Breach], int]:
    """Open tasks past due, then the period's breached visits; and the total.

    Each part newest breach first: by the instant it breached (an open task's due time).
    """
    query = scoped(user, filters.query())
    open_where = [
        col(Task.process) == filters.process,
        col(Task.status) == "open",
        col(Task.due_at).is_not(None),
        col(Task.due_at) < now,
        _visible_tasks(query),
    ]
    fact_where = [
        col(StepFact.process) == filters.process,
        col(StepFact.sla_met).is_(False),
        col(StepFact.opened_at) >= since,
        _visible(query),
    ]
    if filters.team:
        open_where.append(col(Task.team) == filters.team)
        fact_where.append(col(StepFact.team) == filters.team)
    total = int(session.exec(select(func.count()).select_from(Task).where(*open_where)).one())
    total += int(session.exec(select(func.count()).select_from(StepFact).where(*fact_where)).one())
    shown: list[Breach] = []
    for task, key in session.exec(
        select(Task, Instance.business_key)
        .join(Instance, col(Instance.id) == col(Task.instance_id))
        .where(*open_where)
        .order_by(col(Task.due_at).desc(), col(Task.id))
        .limit(BREACHES_SHOWN)
    ):
        shown.append(
            Breach(task.instance_id, key, task.step, task.assignee, task.due_at, None, None, True)
        )
    left = BREACHES_SHOWN - len(shown)
    if left > 0:
        for fact, key in session.exec(
            select(StepFact, Instance.business_key)
            .join(Instance, col(Instance.id) == col(StepFact.instance_id))
            .where(*fact_where)
            # the instant each breached (a visit's breach is its due time when not recorded)
            .order_by(
                func.coalesce(col(StepFact.breached_at), col(StepFact.due_at)).desc(),
                col(StepFact.id).desc(),
            )
            .limit(left)
        ):
            shown.append(
                Breach(
                    fact.instance_id,
                    key,
                    fact.step,
                    fact.assignee,
                    fact.due_at,
                    fact.closed_at,
                    fact.breached_at,
                    False,
                    fact.outcome,
                )
            )
    return shown, total


@router.get("/dashboard", response_class=HTMLResponse)
def dashboard(
    request: Request,
    user: WebUser,
    process: str | None = Query(default=None, max_length=100),
    team: str | None = Query(default=None, max_length=100),
    weeks: int | None = Query(default=None, ge=1, le=520),
) -> HTMLResponse:
    """How consistently a process is run: attainment by week, reps, funnel, breaches."""
    context = context_of(request)
    definitions = context.definitions
    now = utc_now()
    with context.read() as session:
        filters = _filters(session, user, definitions, process, team, weeks)

        def report(name: ReportName, by: str | None = None) -> Any:
            return run_report(
                session=session,
                principal=user,
                definitions=definitions,
                name=name,
                query=filters.query(by),
                now=now,
            )

        by_week = cast(AttainmentReport, report("attainment", "week"))
        consistency = cast(ConsistencyReport, report("consistency"))
        durations = cast(DurationReport, report("durations", "rep"))
        funnel = cast(FunnelReport, report("funnel"))
        outcomes = cast(OutcomeReport, report("outcomes"))
        backlog = cast(BacklogReport, report("backlog"))
        breach_list, breach_total = breaches(session, user, filters, by_week.scope.since, now)
        # across processes, so not narrowed to the chosen one; a manager sees their teams' visits
        stages = (
            stage_funnel(
                session,
                definitions.org.stages,
                since=by_week.scope.since,
                teams=filters.team
                and [filters.team]
                or (None if user.is_admin else teams_for(user, definitions)),
            )
            if definitions.org.stages
            else None
        )
    compiled = definitions.processes[filters.process]
    goal = by_week.scope.goal
    week_rows = {row.key: row for row in by_week.rows}
    labels = [week.label for week in by_week.scope.weeks]
    chart = attainment_chart(
        [
            WeekBar(
                label=week.label.split("-")[1],
                attainment=week_rows[week.label].attainment if week.label in week_rows else None,
                measured=week_rows[week.label].measured if week.label in week_rows else 0,
                caption=week.start.strftime("%d %b"),
            )
            for week in by_week.scope.weeks
        ],
        goal,
        title=f"{compiled.spec.title}: SLA attainment by week",
    )
    medians = {row.key: row.p50_seconds for row in durations.rows}
    reps: list[dict[str, Any]] = []
    for rep in consistency.reps:
        by_label = {w.week: w for w in rep.weeks}
        dots = week_dots(
            [
                WeekDot(
                    label,
                    by_label[label].attainment if label in by_label else None,
                    by_label[label].meets_goal if label in by_label else None,
                )
                for label in labels
            ]
        )
        met = sum(w.met for w in rep.weeks)
        breached = sum(w.breached for w in rep.weeks)
        reps.append(
            {
                "rep": rep.rep,
                "name": _name(definitions, rep.rep),
                "team": rep.team,
                "attainment": rep.attainment,
                "meets_goal": None
                if rep.attainment is None or goal is None
                else rep.attainment >= goal - 1e-9,
                "weeks_met": rep.weeks_met,
                "weeks_active": rep.weeks_active,
                "trend": rep.trend,
                "slope": rep.slope_per_week,
                "slope_text": slope_text(rep.slope_per_week),
                "dots": dots,
                "met": met,
                "breached": breached,
                "median": medians.get(rep.rep),
            }
        )
    reps.sort(key=lambda r: (-(r["attainment"] or 0), r["rep"]))
    funnel_svg = funnel_chart(
        [FunnelBar(step.step, step.instances, step.share) for step in funnel.steps]
    )
    task_steps = [row for row in outcomes.rows if row.key is None]
    outcome_svg = outcome_chart(
        [
            (row.step, [OutcomeSlice(o.outcome or "(none)", o.count) for o in row.outcomes])
            for row in task_steps
        ],
        declared=declared_outcomes(compiled.spec),
    )
    total = by_week.total
    return render(
        request,
        user,
        "dashboard.html",
        {
            "filters": filters,
            "process": compiled,
            "processes": sorted(definitions.processes),
            "teams": teams_for(user, definitions),
            "week_choices": WEEK_CHOICES,
            "goal": goal,
            "total": total,
            "chart": chart,
            "reps": reps,
            "spread": consistency.teams,
            "funnel": funnel_svg,
            "funnel_empty": not funnel.steps,
            "funnel_started": funnel.started,
            "outcomes": outcome_svg,
            "outcomes_empty": not task_steps,
            "backlog": backlog.total,
            "stages": stages,
            "breaches": breach_list,
            "breach_total": breach_total,
            "exports": [
                (name, label, f"/dashboard/{name}.csv?{filters.params(by=EXPORT_BY.get(name))}")
                for name, label in EXPORTS
            ],
            "period": (by_week.scope.weeks[0].start, by_week.scope.weeks[-1].start)
            if by_week.scope.weeks
            else None,
            "timezone": by_week.scope.timezone,
            "scope_note": _scope_note(user),
            "now": now.astimezone(UTC),
        },
    )


@router.get("/dashboard/{name}.csv")
def dashboard_csv(
    name: str,
    request: Request,
    user: WebUser,
    process: str | None = Query(default=None, max_length=100),
    team: str | None = Query(default=None, max_length=100),
    weeks: int | None = Query(default=None, ge=1, le=520),
    by: str | None = Query(default=None, max_length=10),
) -> Response:
    """A report as CSV with the dashboard's filters, for the signed-in user."""
    names = [export for export, _ in EXPORTS]
    if name not in names:
        raise Invalid(f"no report '{name}'; reports: {', '.join(names)}")
    if by not in (None, "rep", "team", "step", "week"):
        raise Invalid(f"by must be rep, team, step or week, not {by!r}")
    context = context_of(request)
    with context.read() as session:
        filters = _filters(session, user, context.definitions, process, team, weeks)
        text = report_csv(
            session=session,
            principal=user,
            definitions=context.definitions,
            name=name,
            query=filters.query(by),
        )
    return Response(
        text,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filters.process}-{name}.csv"',
            "Cache-Control": "no-store",
        },
    )


def _name(definitions: Definitions, user: str) -> str:
    spec = definitions.org.users.get(user)
    return spec.name if spec is not None else user


def _scope_note(user: Principal) -> str:
    if user.is_admin:
        return "every team"
    if user.manages:
        return "your teams: " + ", ".join(user.manages)
    return "your own work"
