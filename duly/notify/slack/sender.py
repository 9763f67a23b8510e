"""The Slack app's delivery: a direct message with buttons, its channel and ts remembered.

The `slack` channel of a user with a `slack_id` (and an org `slack:` app) targets their Slack
member id, with the bot token's variable as the channel's `secret_env`; other `slack` targets
are incoming-webhook URLs (`duly.notify.channels.post_slack`). A send first looks for the
message it already recorded, so a delivery retried after its message was recorded posts once
(a crash between Slack's answer and the record can still post twice: Slack has no
idempotency key for chat.postMessage).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from sqlmodel import Session, col, select

from duly.notify.outbox import Outgoing
from duly.notify.slack import blocks
from duly.notify.slack.client import web_client
from duly.store.crud import insert_if_absent
from duly.store.db import SessionFactory, write_session
from duly.store.models import Alert, SlackMessage, Task, Team, TeamMember, User
from duly.store.types import utc_now


class SlackSendError(Exception):
    """Slack did not take a message; says what Slack answered."""


def task_id_of(item: Outgoing) -> str | None:
    """The task an assignment delivery is about (its key is `<task>:assigned:<user>:slack`)."""
    if item.kind != "task.assigned":
        return None
    head, found, _ = item.key.rpartition(":assigned:")
    return head if found else None


def managed_members(session: Session, manager: str) -> list[tuple[str, str]]:
    """`(id, name)` of the members of the teams `manager` manages, and the manager."""
    teams = select(Team.id).where(Team.manager == manager, col(Team.active))
    rows = session.exec(
        select(User.id, User.name)
        .join(TeamMember, col(TeamMember.user_id) == col(User.id))
        .where(col(TeamMember.team_id).in_(teams), col(User.active))
        .order_by(col(User.name))
    ).all()
    people = dict(rows)
    me = session.get(User, manager)
    if me is not None:
        people.setdefault(me.id, me.name)
    return sorted(people.items(), key=lambda pair: pair[1])


def interactive(
    session: Session, item: Outgoing
) -> tuple[list[dict[str, Any]], Task | None, Alert | None]:
    """The delivery's blocks with duly's buttons, and the task or alert they act on."""
    base = list(item.payload.get("blocks", []))
    task_id = task_id_of(item)
    if task_id is not None:
        task = session.get(Task, task_id)
        if task is not None:
            return blocks.task_blocks(base, task), task, None
    if item.kind.startswith("alert."):
        alert = session.exec(
            select(Alert).where(Alert.key == item.key.removesuffix(":slack"))
        ).first()
        recipient = session.get(User, alert.recipient) if alert is not None else None
        if alert is not None and recipient is not None and recipient.role in ("manager", "admin"):
            members = managed_members(session, recipient.id)
            task = session.get(Task, alert.task_id) if alert.task_id else None
            return blocks.alert_blocks(base, alert, members), task, alert
        return base, None, alert
    return base, None, None


async def send_app_message(item: Outgoing, sessions: SessionFactory, api_url: str) -> str:
    """Post a delivery as a direct message from the app and remember where it went.

    Raises:
        SlackSendError: The bot token is unset, or Slack refused or did not answer.
    """
    assert item.target is not None
    token = os.environ.get(item.secret_env or "", "")
    if not token:
        raise SlackSendError(
            f"the environment variable {item.secret_env} (bot_token of the Slack app in "
            "org.yaml) is not set where the worker runs; set it to the app's bot token"
        )
    prepared = await asyncio.to_thread(_prepare, sessions, item)
    if isinstance(prepared, str):
        return prepared
    message_blocks, task_id, alert_id = prepared
    client = web_client(token, api_url)
    try:
        response = await client.chat_postMessage(
            channel=item.target,
            text=str(item.payload.get("text", item.body)),
            blocks=message_blocks,
        )
    except SlackApiError as exc:
        raise SlackSendError(f"Slack chat.postMessage: {exc.response.get('error')}") from exc
    except (SlackClientError, OSError, TimeoutError) as exc:
        raise SlackSendError(f"Slack chat.postMessage: {str(exc) or type(exc).__name__}") from exc
    channel, ts = str(response["channel"]), str(response["ts"])
    row = SlackMessage(
        delivery_key=item.key,
        user_id=item.user_id,
        task_id=task_id,
        alert_id=alert_id,
        channel=channel,
        ts=ts,
        posted_at=utc_now(),
    )
    await asyncio.to_thread(_remember, sessions, row)
    return f"Slack chat.postMessage to {item.target}: {ts}"


def _prepare(
    sessions: SessionFactory, item: Outgoing
) -> str | tuple[list[dict[str, Any]], str | None, int | None]:
    """What was posted already (a description), or the blocks and the task and alert ids."""
    with sessions() as session:
        posted = session.get(SlackMessage, item.key)
        if posted is not None:
            return f"already posted to {posted.channel} at {posted.ts}"
        message_blocks, task, alert = interactive(session, item)
        task_id = task.id if task is not None else (alert.task_id if alert else None)
        return message_blocks, task_id, alert.id if alert is not None else None


def _remember(sessions: SessionFactory, row: SlackMessage) -> None:
    with write_session(sessions) as session:
        insert_if_absent(session=session, row=row)
