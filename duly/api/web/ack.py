"""One-click acknowledge from a notification: `/ack/<token>` (see `duly.notify.ack_links`).

GET shows the alert and a button and changes nothing, so a mail scanner that fetches every
link in a message acknowledges nothing; the button POSTs. The signed token stands for the
manager the link was sent to (no session needed), and the POST goes through the alerts service
as that user, so the access rules are the API's. A link works once: after the alert is
acknowledged (by this link or anywhere else) it says by whom and when, and changes nothing.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from sqlmodel import Session, select
from starlette.concurrency import run_in_threadpool

from duly.api.errors import http_status
from duly.api.web.render import context_of, render
from duly.notify.ack_links import AckClaim, AckLinkInvalid, ack_secret, read_token
from duly.notify.messages import load_record, reader_zone, task_of
from duly.services import alerts as alert_service
from duly.services.auth import principal_of
from duly.services.errors import ServiceError
from duly.store.models import Alert

router = APIRouter(include_in_schema=False)

MAX_TOKEN = 1024
"""A longer token is not one duly made."""

HEADERS = {"Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"}
"""The token is in the URL: no page it links to learns it, no index keeps it."""


def _claim(request: Request, token: str) -> AckClaim:
    if len(token) > MAX_TOKEN:
        raise AckLinkInvalid("this acknowledge link is not one duly made")
    return read_token(ack_secret(context_of(request).settings), token)


def _alert(session: Session, claim: AckClaim) -> Alert:
    alert = session.exec(select(Alert).where(Alert.key == claim.alert_key)).first()
    if alert is None:
        raise AckLinkInvalid("the alert this link acknowledges is no longer recorded")
    return alert


def _page(
    request: Request, token: str, values: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    response = render(
        request,
        None,
        "ack.html",
        {"token": token, "alert": None, "problem": None, "just_now": False, **values},
        status_code=status,
    )
    response.headers.update(HEADERS)
    return response


def _view(session: Session, alert: Alert) -> dict[str, Any]:
    record = load_record(session, alert.instance_id)
    task = task_of(session, alert)
    return {
        "alert": alert,
        "zone": reader_zone(session, alert.recipient, record),
        "headline": task.title if task is not None else alert.step or alert.clock or alert.level,
    }


@router.get("/ack/{token}", response_class=HTMLResponse)
def ack_page(token: str, request: Request) -> HTMLResponse:
    """The alert and an Acknowledge button; opening it changes nothing."""
    try:
        claim = _claim(request, token)
        with context_of(request).read() as session:
            values = _view(session, _alert(session, claim))
    except AckLinkInvalid as exc:
        return _page(request, token, {"problem": str(exc)}, status=400)
    return _page(request, token, values)


@router.post("/ack/{token}", response_class=HTMLResponse)
async def ack_by_link(token: str, request: Request) -> HTMLResponse:
    """Acknowledge the alert as the manager the link was sent to, once."""
    context = context_of(request)

    def acknowledge() -> dict[str, Any]:
        claim = _claim(request, token)
        with context.write() as session:
            alert = _alert(session, claim)
            first = alert.acknowledged_at is None
            if first:
                principal = principal_of(session=session, user_id=claim.user)
                assert alert.id is not None
                alert_service.ack_alert(session=session, principal=principal, alert_id=alert.id)
                session.refresh(alert)
            return {**_view(session, alert), "just_now": first}

    try:
        values = await run_in_threadpool(acknowledge)
    except AckLinkInvalid as exc:
        return _page(request, token, {"problem": str(exc)}, status=400)
    except ServiceError as exc:
        return _page(request, token, {"problem": exc.message}, status=http_status(exc))
    return _page(request, token, values)
