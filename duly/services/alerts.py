"""Alerts: warnings, breaches, escalations and failures, listed and acknowledged."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, true
from sqlmodel import Session, col, func, select

from duly.services.access import alerts_visible, require_alert
from duly.services.auth import Principal
from duly.services.errors import NotFound
from duly.services.schemas import AlertState, Page
from duly.store.models import Alert, AlertPublic
from duly.store.types import utc_now


def in_state(state: AlertState) -> ColumnElement[bool]:
    """The alerts in a state: `open` ones still need action (the badge counts them).

    An alert is open until someone acknowledges it or its task resolves it (completed,
    cancelled or reassigned); `acknowledged` and `resolved` may overlap.
    """
    if state == "open":
        return and_(col(Alert.acknowledged_at).is_(None), col(Alert.resolved_at).is_(None))
    if state == "acknowledged":
        return col(Alert.acknowledged_at).is_not(None)
    if state == "resolved":
        return col(Alert.resolved_at).is_not(None)
    return true()


def list_alerts(
    *,
    session: Session,
    principal: Principal,
    state: AlertState = "open",
    level: str | None = None,
    recipient: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[AlertPublic]:
    """Alerts the principal may see, newest first.

    Args:
        session: A database session.
        principal: Who asks: a rep sees their own alerts, a manager also their teams'
            members', an admin all.
        state: `open` (still needing action, the default), `acknowledged`, `resolved` (its
            task completed, was cancelled or reassigned) or `all`.
        level: Only this level (one of `duly.store.models.ALERT_LEVELS`).
        recipient: Only alerts addressed to this user.
        limit: At most this many.
        offset: Skip this many first.
    """
    where = [alerts_visible(principal), in_state(state)]
    if level is not None:
        where.append(col(Alert.level) == level)
    if recipient is not None:
        where.append(col(Alert.recipient) == recipient)
    total = session.exec(select(func.count()).select_from(Alert).where(*where)).one()
    rows = session.exec(
        select(Alert)
        .where(*where)
        .order_by(col(Alert.created_at).desc(), col(Alert.id).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return Page[AlertPublic](
        items=[AlertPublic.model_validate(row) for row in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


def get_alert(*, session: Session, principal: Principal, alert_id: int) -> AlertPublic:
    """One alert the principal may see.

    Raises:
        NotFound: No such alert.
        NotAllowed: Someone else's alert, outside the teams the principal manages.
    """
    return AlertPublic.model_validate(_visible_alert(session, principal, alert_id))


def ack_alert(*, session: Session, principal: Principal, alert_id: int) -> AlertPublic:
    """Acknowledge an alert; acknowledging it again changes nothing. The caller commits.

    Args:
        session: A session in a transaction that writes.
        principal: Who acknowledges it: its recipient, their manager, or an admin.
        alert_id: The alert.

    Raises:
        NotFound: No such alert.
        NotAllowed: Someone else's alert, outside the teams the principal manages.
    """
    alert = _visible_alert(session, principal, alert_id)
    if alert.acknowledged_at is None:
        alert.acknowledged_at, alert.acknowledged_by = utc_now(), principal.id
        session.add(alert)
        session.flush()
    return AlertPublic.model_validate(alert)


def _visible_alert(session: Session, principal: Principal, alert_id: int) -> Alert:
    alert = session.get(Alert, alert_id)
    if alert is None:
        raise NotFound(f"no alert {alert_id}")
    require_alert(principal, alert)
    return alert
