"""Reports for a user: the figures their role lets them see, as models or CSV.

Who sees what (the same people as for tasks, `duly.services.access`):

- a rep, their own figures: every report is narrowed to the visits assigned to them, and
  asking for another rep's is refused;
- a manager, the figures of the teams they manage: visits that count for one of those teams
  or are assigned to one of its members (or to themself); asking for another team, or for a
  rep outside their teams, is refused;
- an admin, everything.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from sqlalchemy.orm import Session

from duly.language.loader import Definitions
from duly.reports import REPORTS, Report, ReportError, ReportQuery, to_csv
from duly.services.auth import Principal
from duly.services.errors import Invalid, NotAllowed

ReportName = Literal["attainment", "durations", "outcomes", "funnel", "backlog", "consistency"]


def scoped(principal: Principal, query: ReportQuery) -> ReportQuery:
    """The query narrowed to what the principal may see.

    Raises:
        NotAllowed: A rep asking for someone else's figures, or a manager for a team (or a
            rep) outside the teams they manage.
    """
    if principal.is_admin:
        return query
    if not principal.manages:
        if query.rep is not None and query.rep != principal.id:
            raise NotAllowed(f"a rep sees their own figures only, not {query.rep}'s")
        return query.model_copy(update={"visible_reps": (principal.id,), "visible_teams": ()})
    if query.team is not None and query.team not in principal.manages:
        raise NotAllowed(
            f"team {query.team} is not one you manage ({', '.join(principal.manages)})"
        )
    if query.rep is not None and not principal.oversees(query.rep):
        raise NotAllowed(f"{query.rep} is not in a team you manage")
    return query.model_copy(
        update={
            "visible_teams": tuple(principal.manages),
            "visible_reps": tuple(sorted({*principal.managed_members, principal.id})),
        }
    )


def run_report(
    *,
    session: Session,
    principal: Principal,
    definitions: Definitions,
    name: ReportName,
    query: ReportQuery,
    now: datetime | None = None,
) -> Report:
    """One report, as the principal may see it.

    Args:
        session: A database session.
        principal: Who asks (see the module for what each role sees).
        definitions: The loaded definitions (goal, calendar, step order).
        name: Which report: attainment, durations, outcomes, funnel, backlog or consistency.
        query: Filters, period and grouping.
        now: The moment the report is made at (default: now).

    Raises:
        NotAllowed: Figures outside what the principal may see.
        Invalid: The query cannot be answered (an unknown process, say).
    """
    make = REPORTS.get(name)
    if make is None:
        raise Invalid(f"no report '{name}'; reports: {', '.join(REPORTS)}")
    narrowed = scoped(principal, query)
    try:
        report: Report = make(session, narrowed, definitions=definitions, now=now)
    except ReportError as exc:
        raise Invalid(str(exc)) from exc
    return report


def report_csv(
    *,
    session: Session,
    principal: Principal,
    definitions: Definitions,
    name: ReportName,
    query: ReportQuery,
    now: datetime | None = None,
) -> str:
    """The same report as CSV (header row first); see `run_report`."""
    return to_csv(
        run_report(
            session=session,
            principal=principal,
            definitions=definitions,
            name=name,
            query=query,
            now=now,
        )
    )
