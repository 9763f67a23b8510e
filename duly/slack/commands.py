"""`/duly tasks`, `/duly alerts`, `/duly report`: what the API lists, as the Slack user sees it.

Each answer is text for the user alone (sent through the command's response_url), read through
the same services and access rules as the API.
"""

from __future__ import annotations

from sqlmodel import Session

from duly import timefmt
from duly.reports import ReportQuery
from duly.reports.models import AttainmentReport, AttainmentRow
from duly.services import alerts as alert_service
from duly.services import reports as report_service
from duly.services import tasks as task_service
from duly.services.auth import Principal
from duly.services.context import ServiceContext
from duly.services.errors import ServiceError
from duly.store.models import User

LISTED = 10  # items an answer lists; the rest are counted
USAGE = (
    "`/duly tasks`: your open tasks, soonest due first\n"
    "`/duly alerts`: your open alerts (a manager: your teams')\n"
    "`/duly report`: your attainment this week (a manager: your teams')"
)


def answer(context: ServiceContext, principal: Principal, text: str) -> str:
    """The answer to `/duly <text>`, for `principal`."""
    word = (text.split() or ["help"])[0].lower()
    with context.read() as session:
        try:
            if word == "tasks":
                return _tasks(context, session, principal)
            if word == "alerts":
                return _alerts(session, principal)
            if word == "report":
                return _report(context, session, principal)
        except ServiceError as exc:
            return exc.message
    return USAGE


def _tasks(context: ServiceContext, session: Session, principal: Principal) -> str:
    page = task_service.list_tasks(
        session=session, principal=principal, definitions=context.definitions, limit=LISTED
    )
    if not page.items:
        return "You have no open tasks."
    lines = [f"*Your open tasks* ({page.total}, soonest due first):"]
    user = session.get(User, principal.id)
    for task in page.items:
        compiled = context.definitions.processes.get(task.process)
        zone = timefmt.reader_zone(
            compiled.calendar.timezone if compiled else None, user.timezone if user else None
        )
        due = f"due {timefmt.local(task.due_at, zone)}" if task.due_at else "no due time"
        left = ""
        if task.business_seconds_left is not None:
            left = (
                f", overdue by {timefmt.duration(-task.business_seconds_left)} business time"
                if task.overdue
                else f", {timefmt.duration(task.business_seconds_left)} business time left"
            )
        lines.append(f"• {task.title}: {due}{left} ({task.process})")
    if page.total > len(page.items):
        lines.append(f"…and {page.total - len(page.items)} more in your duly inbox.")
    return "\n".join(lines)


def _alerts(session: Session, principal: Principal) -> str:
    page = alert_service.list_alerts(session=session, principal=principal, limit=LISTED)
    if not page.items:
        return "No open alerts."
    lines = [f"*Open alerts* ({page.total}, newest first):"]
    for alert in page.items:
        lines.append(f"• {alert.level}: {alert.message} (for {alert.recipient})")
    if page.total > len(page.items):
        lines.append(f"…and {page.total - len(page.items)} more on duly's alerts page.")
    return "\n".join(lines)


def _report(context: ServiceContext, session: Session, principal: Principal) -> str:
    mine = not principal.manages and not principal.is_admin
    query = ReportQuery(weeks=1, rep=principal.id if mine else None, by=None if mine else "rep")
    report = report_service.run_report(
        session=session,
        principal=principal,
        definitions=context.definitions,
        name="attainment",
        query=query,
    )
    assert isinstance(report, AttainmentReport)
    whose = "Your" if mine else "Your teams'"
    lines = [f"*{whose} SLA attainment this week*: {_line(report.total)}"]
    for row in report.rows:
        lines.append(f"• {row.key}: {_line(row)}")
    return "\n".join(lines)


def _line(row: AttainmentRow) -> str:
    share = f"{row.attainment * 100:.0f}%" if row.attainment is not None else "nothing measured"
    return f"{share} ({row.met} met, {row.breached} breached)"
