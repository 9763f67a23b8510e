"""What a click in Slack does: complete, open the fields modal, acknowledge, reassign.

Each action runs as the org.yaml user whose `slack_id` clicked, through the same services and
access rules as the API (`duly.services`). The endpoint answers Slack at once and runs
these in the background; what the user must hear (a refusal, a click on a stale button) goes
back ephemerally through the payload's `response_url`, and messages whose task or alert moved
on are rewritten (`duly.notify.slack.updates.refresh`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog
from slack_sdk.errors import SlackClientError
from slack_sdk.webhook.async_client import AsyncWebhookClient
from starlette.concurrency import run_in_threadpool

from duly.notify.channels import outbound_allowed
from duly.notify.slack import blocks
from duly.notify.slack.client import web_client
from duly.notify.slack.updates import refresh, task_line
from duly.services import alerts as alert_service
from duly.services import tasks as task_service
from duly.services.access import require_complete
from duly.services.auth import Principal, principal_of
from duly.services.context import ServiceContext
from duly.services.errors import Conflict, ServiceError
from duly.services.schemas import CompleteTaskRequest
from duly.slack.config import user_for
from duly.store.models import Alert, Task, User

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class SlackRequest:
    """A verified Slack request's parts duly acts on.

    Attributes:
        context: The API's context (settings, definitions, database, Temporal).
        bot_token: The app's bot token.
        slack_user: The Slack member id of who clicked or typed.
        response_url: Where to answer ephemerally, when Slack gave one.
    """

    context: ServiceContext
    bot_token: str
    slack_user: str
    response_url: str | None


class NotLinked(Exception):
    """The Slack user is not an org.yaml user; the message says what to do."""


def principal(request: SlackRequest) -> Principal:
    """The duly user behind the Slack user.

    Raises:
        NotLinked: No org.yaml user has this `slack_id`, or that user left.
    """
    user_id = user_for(request.context.definitions.org, request.slack_user)
    if user_id is None:
        raise NotLinked(
            f"your Slack account ({request.slack_user}) is not linked to a duly user: "
            f"ask your duly admin to add `slack_id: {request.slack_user}` to you in org.yaml"
        )
    with request.context.read() as session:
        try:
            return principal_of(session=session, user_id=user_id)
        except ServiceError as exc:
            raise NotLinked(exc.message) from None


async def respond(request: SlackRequest, text: str) -> None:
    """Tell the user something only they see, through the response_url (if it may be reached)."""
    url = request.response_url
    if not url or not outbound_allowed(url, request.context.settings):
        _log.warning("slack_response_not_sent", text=text)
        return
    try:
        await AsyncWebhookClient(url, timeout=10).send(
            text=text, response_type="ephemeral", replace_original=False
        )
    except (SlackClientError, OSError, TimeoutError) as exc:
        _log.warning("slack_response_failed", error=str(exc) or type(exc).__name__)


async def tell(request: SlackRequest, text: str) -> None:
    """Tell the user in a direct message (a modal submission has no response_url)."""
    settings = request.context.settings
    if not outbound_allowed(settings.slack_api_url, settings):
        return
    try:
        client = web_client(request.bot_token, settings.slack_api_url)
        await client.chat_postMessage(channel=request.slack_user, text=text)
    except (SlackClientError, OSError, TimeoutError) as exc:
        _log.warning("slack_message_failed", error=str(exc) or type(exc).__name__)


def stale_task_text(request: SlackRequest, task_id: str) -> str | None:
    """What happened to a task no longer open (for a click on an old button), else None."""
    with request.context.read() as session:
        task = session.get(Task, task_id)
        if task is None:
            return None
        reader = user_for(request.context.definitions.org, request.slack_user) or ""
        return task_line(session, task, reader)


async def _refresh(request: SlackRequest) -> None:
    settings = request.context.settings
    if outbound_allowed(settings.slack_api_url, settings):
        await refresh(request.context.sessions, settings.slack_api_url)


# --- the actions -------------------------------------------------------------------------------


async def complete(
    request: SlackRequest, task_id: str, outcome: str, note: str | None, fields: dict[str, Any]
) -> str | None:
    """Complete a task as the clicking user; returns what to tell them, None on success."""
    try:
        who = await run_in_threadpool(principal, request)
        await task_service.complete_task(
            request.context,
            who,
            task_id,
            CompleteTaskRequest(outcome=outcome, note=note, fields=fields),
        )
    except NotLinked as exc:
        return str(exc)
    except Conflict as exc:
        return await run_in_threadpool(stale_task_text, request, task_id) or exc.message
    except ServiceError as exc:
        return exc.message
    await _refresh(request)
    return None


async def open_modal(request: SlackRequest, task_id: str, trigger_id: str) -> str | None:
    """Open the fields modal of an open task the user may complete; else what to tell them."""

    def check() -> Task:
        who = principal(request)
        with request.context.read() as session:
            task = session.get(Task, task_id)
            if task is None:
                raise NotLinked(f"task {task_id} no longer exists")
        if task.status != "open":
            raise NotLinked(stale_task_text(request, task_id) or f"task {task_id} is {task.status}")
        try:
            require_complete(who, task)
        except ServiceError as exc:
            raise NotLinked(exc.message) from None
        return task

    try:
        task = await run_in_threadpool(check)
    except NotLinked as exc:
        return str(exc)
    settings = request.context.settings
    if not outbound_allowed(settings.slack_api_url, settings):
        return "duly may not reach Slack's API (DULY_OUTBOUND_HOSTS)"
    try:
        await web_client(request.bot_token, settings.slack_api_url).views_open(
            trigger_id=trigger_id,
            view=blocks.modal(task, blocks.field_specs(request.context.definitions, task)),
        )
    except SlackClientError as exc:
        return f"could not open the form ({exc}); complete the task in duly's inbox instead"
    return None


async def acknowledge(request: SlackRequest, alert_id: int) -> str | None:
    """Acknowledge an alert as the clicking user; what to tell them, None on success."""

    def act() -> str | None:
        who = principal(request)
        with request.context.write() as session:
            alert = session.get(Alert, alert_id)
            if alert is not None and alert.acknowledged_at is not None:
                by = session.get(User, alert.acknowledged_by or "")
                return (
                    f"Already acknowledged by {by.name if by else alert.acknowledged_by} "
                    f"at {alert.acknowledged_at:%Y-%m-%d %H:%M} UTC"
                )
            alert_service.ack_alert(session=session, principal=who, alert_id=alert_id)
        return None

    try:
        said = await run_in_threadpool(act)
    except NotLinked as exc:
        return str(exc)
    except ServiceError as exc:
        return exc.message
    await _refresh(request)
    return said


async def reassign(request: SlackRequest, alert_id: int, to: str) -> str | None:
    """Hand the alert's task to `to` as the clicking manager; what to tell them, or None."""

    def task_of_alert() -> str | None:
        with request.context.read() as session:
            alert = session.get(Alert, alert_id)
            return alert.task_id if alert is not None else None

    try:
        who = await run_in_threadpool(principal, request)
        task_id = await run_in_threadpool(task_of_alert)
        if task_id is None:
            return f"alert {alert_id} is not about a task"
        await task_service.reassign_task(request.context, who, task_id, to)
    except NotLinked as exc:
        return str(exc)
    except Conflict as exc:
        stale = await run_in_threadpool(stale_task_text, request, task_id) if task_id else None
        return stale or exc.message
    except ServiceError as exc:
        return exc.message
    await _refresh(request)
    return None


async def handle_block_actions(request: SlackRequest, payload: dict[str, Any]) -> None:
    """Run each action of a `block_actions` payload and answer the user when needed."""
    actions = payload.get("actions")
    for action in actions if isinstance(actions, list) else []:
        if not isinstance(action, dict):
            continue
        action_id = str(action.get("action_id", ""))
        said: str | None
        if action_id.startswith(f"{blocks.COMPLETE}:"):
            outcome = action_id.split(":", 1)[1]
            said = await complete(request, str(action.get("value", "")), outcome, None, {})
        elif action_id == blocks.OPEN_MODAL:
            trigger = str(payload.get("trigger_id", ""))
            said = await open_modal(request, str(action.get("value", "")), trigger)
        elif action_id == blocks.ACKNOWLEDGE:
            said = await acknowledge(request, _int(action.get("value")))
        elif action_id.startswith(f"{blocks.REASSIGN}:"):
            selected = action.get("selected_option")
            to = str(selected.get("value", "")) if isinstance(selected, dict) else ""
            said = await reassign(request, _int(action_id.split(":", 1)[1]), to)
        else:
            continue  # link buttons also send an action; there is nothing to do
        if said:
            await respond(request, said)


async def handle_view_submission(
    request: SlackRequest, task_id: str, outcome: str, note: str | None, fields: dict[str, Any]
) -> None:
    """Complete the modal's task; a refusal reaches the user as a direct message."""
    said = await complete(request, task_id, outcome, note, fields)
    if said:
        await tell(request, f"Task {task_id} was not completed: {said}")


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1
