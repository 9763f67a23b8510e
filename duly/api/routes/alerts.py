"""Alerts: list, one, acknowledge."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from duly.api.deps import Context, CurrentUser, DbSession
from duly.api.routes import problems
from duly.services import alerts
from duly.services.schemas import MAX_PAGE, AlertState, Page
from duly.store.models import AlertLevel, AlertPublic

router = APIRouter(tags=["alerts"])

AlertId = Annotated[int, Path(ge=1, le=2**62)]


@router.get("/api/alerts", response_model=Page[AlertPublic], responses=problems(401))
def list_alerts(
    session: DbSession,
    user: CurrentUser,
    state: AlertState = "open",
    level: AlertLevel | None = None,
    recipient: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page[AlertPublic]:
    """Alerts I may see (mine; a manager also their teams'), newest first."""
    return alerts.list_alerts(
        session=session,
        principal=user,
        state=state,
        level=level,
        recipient=recipient,
        limit=limit,
        offset=offset,
    )


@router.get("/api/alerts/{alert_id}", response_model=AlertPublic, responses=problems(401, 403, 404))
def get_alert(alert_id: AlertId, session: DbSession, user: CurrentUser) -> AlertPublic:
    """One alert."""
    return alerts.get_alert(session=session, principal=user, alert_id=alert_id)


@router.post(
    "/api/alerts/{alert_id}/ack", response_model=AlertPublic, responses=problems(401, 403, 404)
)
def ack_alert(alert_id: AlertId, context: Context, user: CurrentUser) -> AlertPublic:
    """Acknowledge an alert (mine, or my teams' as their manager); again changes nothing."""
    with context.write() as session:
        return alerts.ack_alert(session=session, principal=user, alert_id=alert_id)
