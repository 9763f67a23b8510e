"""Keep posted Slack messages current: once a task or alert moves on, its buttons go.

`refresh` rewrites (`chat.update`) every open message about a task that is no longer open, or
no longer the recipient's, and every alert message once the alert is acknowledged or resolved,
with a line saying what happened, and no buttons. A task that breached while its assignee still
has it gets a line saying so, its buttons kept. The deliverer runs it after each batch; the
interaction endpoint runs it after a click changed something. A message's state is recorded
only after Slack took the update, so a failed update is tried again next time.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from typing import Any

import structlog
from slack_sdk.errors import SlackClientError
from sqlalchemy import and_, exists, or_
from sqlmodel import Session, col, select

from duly import timefmt
from duly.notify.channels import outbound_allowed
from duly.notify.messages import load_record, reader_zone
from duly.notify.slack import blocks
from duly.notify.slack.client import web_client
from duly.settings import Settings
from duly.store.db import SessionFactory, write_session
from duly.store.models import Alert, Delivery, SlackMessage, Task, User, UserChannel
from duly.store.types import utc_now

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Update:
    """One message to rewrite, and what it now says.

    Attributes:
        message: The posted message.
        line: What happened, for the message and its notification text.
        final: Whether its buttons go (the task or alert moved on for good).
        blocks: The message's new blocks.
        token_variable: The variable holding the bot token that posted it.
    """

    message: SlackMessage
    line: str
    final: bool
    blocks: list[dict[str, Any]]
    token_variable: str


def _names(session: Session) -> dict[str, str]:
    return {user.id: user.name for user in session.exec(select(User))}


def task_line(session: Session, task: Task, reader: str) -> str | None:
    """What happened to a task no longer open, times in `reader`'s zone; None while open."""
    zone = reader_zone(session, reader, load_record(session, task.instance_id))
    return blocks.what_happened(task, _names(session), zone)


def stale_text(session: Session, message: SlackMessage) -> str | None:
    """What happened to the message's task or alert, or None while its buttons still apply."""
    task = session.get(Task, message.task_id) if message.task_id else None
    if task is not None and task.status != "open":
        return task_line(session, task, message.user_id)
    if message.alert_id is not None:
        alert = session.get(Alert, message.alert_id)
        if alert is None:
            return None
        zone = reader_zone(session, message.user_id, load_record(session, alert.instance_id))
        if alert.acknowledged_at is not None:
            names = _names(session)
            who = names.get(alert.acknowledged_by or "", alert.acknowledged_by or "someone")
            return f"Acknowledged by {who} at {timefmt.local(alert.acknowledged_at, zone)}"
        if alert.resolved_at is not None:
            return f"Resolved ({alert.resolution or 'closed'})"
        return None
    if task is not None and task.assignee != message.user_id:
        names = _names(session)
        return f"Reassigned to {names.get(task.assignee or '', task.assignee or 'nobody')}"
    return None


def breach_text(session: Session, message: SlackMessage) -> str | None:
    """`Past due: ...` once the message's task breached, while it is still the reader's."""
    if message.alert_id is not None or message.task_id is None:
        return None
    breach = session.exec(
        select(Alert)
        .where(Alert.task_id == message.task_id, Alert.level == "breach")
        .order_by(col(Alert.created_at))
    ).first()
    task = session.get(Task, message.task_id)
    if breach is None or task is None or task.due_at is None:
        return None
    zone = reader_zone(session, message.user_id, load_record(session, task.instance_id))
    return f"Past due since {timefmt.local(task.due_at, zone)}: your manager has been alerted"


def _candidates(session: Session) -> list[SlackMessage]:
    """Open messages whose task or alert changed (one query; most messages are skipped)."""
    task_moved = exists().where(
        col(Task.id) == col(SlackMessage.task_id),
        or_(
            col(Task.status) != "open",
            and_(
                col(SlackMessage.alert_id).is_(None),
                col(Task.assignee) != col(SlackMessage.user_id),
            ),
        ),
    )
    alert_moved = exists().where(
        col(Alert.id) == col(SlackMessage.alert_id),
        or_(col(Alert.acknowledged_at).is_not(None), col(Alert.resolved_at).is_not(None)),
    )
    breached = and_(
        col(SlackMessage.alert_id).is_(None),
        col(SlackMessage.last_line).is_(None),
        exists().where(
            col(Alert.task_id) == col(SlackMessage.task_id), col(Alert.level) == "breach"
        ),
    )
    return list(
        session.exec(
            select(SlackMessage).where(
                col(SlackMessage.closed_at).is_(None), or_(task_moved, alert_moved, breached)
            )
        ).all()
    )


def pending(sessions: SessionFactory) -> list[Update]:
    """The messages to rewrite now, with what each should say."""
    found = []
    with sessions() as session:
        for message in _candidates(session):
            line = stale_text(session, message)
            final = line is not None
            if line is None:
                line = breach_text(session, message)
            if line is None or line == message.last_line:
                continue
            delivery = session.exec(
                select(Delivery).where(Delivery.key == message.delivery_key)
            ).first()
            channel = session.get(UserChannel, (message.user_id, "slack"))
            if delivery is None or channel is None or not channel.secret_env:
                continue
            base = list(delivery.payload.get("blocks", []))
            task = session.get(Task, message.task_id) if message.task_id else None
            if final or task is None:
                new_blocks = blocks.closed_blocks(base, line)
            else:
                new_blocks = [*blocks.task_blocks(base, task), blocks.note(line)]
            found.append(Update(message, line, final, new_blocks, channel.secret_env))
    return found


def _record(sessions: SessionFactory, update: Update) -> None:
    with write_session(sessions) as session:
        row = session.get(SlackMessage, update.message.delivery_key)
        if row is not None and row.closed_at is None:
            row.last_line = update.line[:300]
            row.closed_at = utc_now() if update.final else None
            session.add(row)


async def refresh(sessions: SessionFactory, api_url: str) -> int:
    """Update every posted message whose task or alert moved on; returns how many were updated."""
    updated = 0
    for update in await asyncio.to_thread(pending, sessions):
        token = os.environ.get(update.token_variable, "")
        if not token:
            continue
        message = update.message
        try:
            await web_client(token, api_url).chat_update(
                channel=message.channel, ts=message.ts, text=update.line, blocks=update.blocks
            )
        except SlackClientError as exc:
            _log.warning("slack_update_failed", message=message.delivery_key, error=str(exc))
            continue
        await asyncio.to_thread(_record, sessions, update)
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
