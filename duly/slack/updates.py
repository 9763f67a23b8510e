"""Keep posted Slack messages current: once a task or alert moves on, its buttons go.

`refresh` rewrites (`chat.update`) every open message about a task that is no longer open, or
no longer the recipient's, and every alert message once the alert is acknowledged or resolved,
with a line saying what happened. The deliverer runs it after each batch; the interaction
endpoint runs it after a click changed something. A message is marked closed only after Slack
took the update, so a failed update is tried again next time.
"""

from __future__ import annotations

import os
from typing import Any

import structlog
from slack_sdk.errors import SlackClientError
from sqlmodel import Session, col, select

from duly import timefmt
from duly.notify.channels import outbound_allowed
from duly.notify.messages import load_record, reader_zone
from duly.settings import Settings
from duly.slack import blocks
from duly.slack.config import web_client
from duly.store.db import SessionFactory, write_session
from duly.store.models import Alert, Delivery, SlackMessage, Task, User, UserChannel
from duly.store.types import utc_now

_log = structlog.get_logger(__name__)


def _names(session: Session) -> dict[str, str]:
    return {user.id: user.name for user in session.exec(select(User))}


def stale_text(session: Session, message: SlackMessage) -> str | None:
    """What happened to the message's task or alert, or None while its buttons still apply."""
    names = _names(session)
    if message.alert_id is not None:
        alert = session.get(Alert, message.alert_id)
        task = session.get(Task, message.task_id) if message.task_id else None
        if task is not None and task.status != "open":
            return _task_line(session, task, message.user_id, names)
        if alert is None:
            return None
        zone = reader_zone(session, message.user_id, load_record(session, alert.instance_id))
        if alert.acknowledged_at is not None:
            who = names.get(alert.acknowledged_by or "", alert.acknowledged_by or "someone")
            return f"Acknowledged by {who} at {timefmt.local(alert.acknowledged_at, zone)}"
        if alert.resolved_at is not None:
            return f"Resolved ({alert.resolution or 'closed'})"
        return None
    task = session.get(Task, message.task_id) if message.task_id else None
    if task is None:
        return None
    if task.status == "open" and task.assignee != message.user_id:
        return f"Reassigned to {names.get(task.assignee or '', task.assignee or 'nobody')}"
    return _task_line(session, task, message.user_id, names)


def _task_line(session: Session, task: Task, reader: str, names: dict[str, str]) -> str | None:
    zone = reader_zone(session, reader, load_record(session, task.instance_id))
    return blocks.what_happened(task, names, zone)


def task_line(session: Session, task: Task, reader: str) -> str | None:
    """What happened to a task no longer open, times in `reader`'s zone; None while open."""
    return _task_line(session, task, reader, _names(session))


def _pending(sessions: SessionFactory) -> list[tuple[SlackMessage, str, list[dict[str, Any]], str]]:
    found = []
    with sessions() as session:
        for message in session.exec(
            select(SlackMessage).where(col(SlackMessage.closed_at).is_(None))
        ):
            what = stale_text(session, message)
            if what is None:
                continue
            delivery = session.exec(
                select(Delivery).where(Delivery.key == message.delivery_key)
            ).first()
            channel = session.get(UserChannel, (message.user_id, "slack"))
            if delivery is None or channel is None or not channel.secret_env:
                continue
            base = list(delivery.payload.get("blocks", []))
            found.append((message, what, blocks.closed_blocks(base, what), channel.secret_env))
    return found


async def refresh(sessions: SessionFactory, api_url: str) -> int:
    """Update every posted message whose task or alert moved on; returns how many were updated."""
    updated = 0
    for message, what, new_blocks, token_variable in _pending(sessions):
        token = os.environ.get(token_variable, "")
        if not token:
            continue
        try:
            await web_client(token, api_url).chat_update(
                channel=message.channel, ts=message.ts, text=what, blocks=new_blocks
            )
        except SlackClientError as exc:
            _log.warning("slack_update_failed", message=message.delivery_key, error=str(exc))
            continue
        with write_session(sessions) as session:
            row = session.get(SlackMessage, message.delivery_key)
            if row is not None and row.closed_at is None:
                row.closed_at = utc_now()
                session.add(row)
        updated += 1
    return updated


async def refresh_slack(sessions: SessionFactory, settings: Settings) -> int:
    """`refresh`, when the Slack API is an allowed host; never raises (the deliverer's loop)."""
    if not outbound_allowed(settings.slack_api_url, settings):
        return 0
    try:
        return await refresh(sessions, settings.slack_api_url)
    except Exception:  # a failed refresh must not stop deliveries; it is tried next cycle
        _log.exception("slack_refresh_failed")
        return 0
