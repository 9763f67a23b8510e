"""Reports: attainment, durations, outcomes, funnel, backlog and consistency, as JSON or CSV.

`GET /api/reports/<name>` answers JSON; `?format=csv` or `GET /api/reports/<name>.csv` the
same report as a CSV download. What each role sees: `duly.services.reports`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import ValidationError

from duly.api.deps import Context, CurrentUser, DbSession
from duly.api.routes import problems
from duly.reports import (
    AttainmentReport,
    BacklogReport,
    ConsistencyReport,
    DurationReport,
    FunnelReport,
    Grouping,
    OutcomeReport,
    Report,
    ReportQuery,
)
from duly.reports.models import MAX_WEEKS
from duly.services import reports
from duly.services.errors import Invalid

router = APIRouter(tags=["reports"])

Name = Annotated[str | None, Query(max_length=100)]


def report_query(
    process: Name = None,
    version: Annotated[int | None, Query(ge=1, le=1_000_000)] = None,
    step: Name = None,
    team: Name = None,
    rep: Name = None,
    since: Annotated[
        datetime | None, Query(description="from this moment (ISO 8601 with a zone)")
    ] = None,
    until: Annotated[datetime | None, Query(description="before this moment")] = None,
    weeks: Annotated[
        int | None, Query(ge=1, le=MAX_WEEKS, description="the last N weeks (default 8)")
    ] = None,
    by: Annotated[Grouping | None, Query(description="rows per rep, team, step or week")] = None,
) -> ReportQuery:
    """The report's filters, period and grouping from the query string.

    Raises:
        Invalid: Contradictory or incomplete parameters (weeks with since, a naive time...).
    """
    try:
        return ReportQuery(
            process=process,
            version=version,
            step=step,
            team=team,
            rep=rep,
            since=since,
            until=until,
            weeks=weeks,
            by=by,
        )
    except ValidationError as exc:
        problems_ = "; ".join(
            str(error["msg"]).removeprefix("Value error, ") for error in exc.errors()
        )
        raise Invalid(problems_) from None


QueryParams = Annotated[ReportQuery, Depends(report_query)]
Format = Literal["json", "csv"]


def _answer(report: Report, name: str, format: Format) -> Any:
    if format == "csv":
        from duly.reports import to_csv

        return Response(
            to_csv(report),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return report


def _route(name: reports.ReportName, model: type[Report], summary: str) -> None:
    def endpoint(
        query: QueryParams,
        session: DbSession,
        context: Context,
        user: CurrentUser,
        format: Format = "json",
    ) -> Any:
        report = reports.run_report(
            session=session,
            principal=user,
            definitions=context.definitions,
            name=name,
            query=query,
        )
        return _answer(report, name, format)

    def csv_endpoint(
        query: QueryParams, session: DbSession, context: Context, user: CurrentUser
    ) -> Any:
        return endpoint(query, session, context, user, "csv")

    endpoint.__doc__ = csv_endpoint.__doc__ = summary
    csv_responses: dict[int | str, dict[str, Any]] = {
        200: {"content": {"text/csv": {}}, "description": "the report as CSV"},
        **problems(401, 403, 422),
    }
    add: Callable[..., Any] = router.get(
        f"/api/reports/{name}",
        response_model=model,
        responses={
            **problems(401, 403, 422),
            200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with ?format=csv"},
        },
        name=f"report_{name}",
    )
    add(endpoint)
    router.get(
        f"/api/reports/{name}.csv",
        response_class=Response,
        responses=csv_responses,
        name=f"report_{name}_csv",
    )(csv_endpoint)


_route("attainment", AttainmentReport, "SLA attainment against the goal, breaches, rungs.")
_route("durations", DurationReport, "Business time to complete tasks: p50, p90, mean.")
_route("outcomes", OutcomeReport, "Outcome mix per step.")
_route("funnel", FunnelReport, "How many instances reached each step.")
_route("backlog", BacklogReport, "Open tasks now, and how many are overdue.")
_route(
    "consistency", ConsistencyReport, "Per rep: weeks meeting the goal, trend; per team: spread."
)
