"""The Slack app's endpoints: `POST /api/slack/interactions` and `POST /api/slack/commands`.

Every request is verified with Slack's v0 signature (`duly.slack.verify`) before it is read.
Slack wants an answer within three seconds, so these answer at once and act in the background
(`duly.slack.interactions`, `duly.slack.commands`), answering the user through the request's
`response_url` or by updating the message. A retry Slack sends (`X-Slack-Retry-Num`) of a
request already handled is answered and dropped.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Coroutine
from typing import Any
from urllib.parse import parse_qs

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from duly.api.deps import Context
from duly.api.routes import problems
from duly.notify.slack import blocks
from duly.services.errors import Malformed
from duly.slack import commands, interactions
from duly.slack.verify import RETRY_HEADER, SeenRequests, app_secrets, verify
from duly.store.models import Task

router = APIRouter(prefix="/api/slack", tags=["slack"])
_log = structlog.get_logger(__name__)
_seen = SeenRequests()
_running: set[asyncio.Task[None]] = set()


def _in_background(work: Coroutine[Any, Any, None]) -> None:
    """Run `work` after the answer, keeping a reference until it ends; failures are logged."""

    async def guarded() -> None:
        try:
            await work
        except Exception:
            _log.exception("slack_background_failed")

    task = asyncio.create_task(guarded())
    _running.add(task)
    task.add_done_callback(_running.discard)


def _object(value: Any) -> dict[str, Any]:
    """`value` when it is a JSON object, else an empty one (a payload missing a part)."""
    return value if isinstance(value, dict) else {}


def _form(body: bytes) -> dict[str, str]:
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise Malformed(f"a Slack request is an urlencoded form: {exc}") from None
    return {name: values[-1] for name, values in fields.items()}


async def _verified(request: Request, context: Context) -> tuple[bytes, str, bool]:
    """The body, the bot token, and whether this is the first time duly handles the body."""
    body = await request.body()
    secrets = app_secrets(context.definitions.org)
    verify(secrets.signing_secret, body, request.headers)
    first = _seen.first_time(body)
    if not first and request.headers.get(RETRY_HEADER) is None:
        first = True  # the same click twice is two clicks; only Slack's retries are dropped
    return body, secrets.bot_token, first


@router.post("/interactions", responses=problems(400, 401, 404, 503))
async def slack_interactions(request: Request, context: Context) -> Response:
    """A button, a select or a modal submission from the Slack app."""
    body, token, first = await _verified(request, context)
    try:
        payload = json.loads(_form(body).get("payload", ""))
    except ValueError:
        raise Malformed("a Slack interaction carries its JSON in the `payload` field") from None
    if not isinstance(payload, dict):
        raise Malformed("a Slack interaction's payload is a JSON object")
    if not first:
        return Response(status_code=200)
    slack = interactions.SlackRequest(
        context=context,
        bot_token=token,
        slack_user=str(_object(payload.get("user")).get("id", "")),
        response_url=str(payload.get("response_url") or "") or None,
    )
    kind = payload.get("type")
    if kind == "block_actions":
        _in_background(interactions.handle_block_actions(slack, payload))
    elif kind == "view_submission":
        return await _submission(context, slack, payload)
    return Response(status_code=200)


async def _submission(
    context: Context, slack: interactions.SlackRequest, payload: dict[str, Any]
) -> Response:
    """Check the modal's values at once (errors show under the fields), then complete."""
    view = _object(payload.get("view"))
    if view.get("callback_id") != blocks.MODAL:
        return Response(status_code=200)
    task_id = str(view.get("private_metadata", ""))

    def load() -> Task | None:
        with context.read() as session:
            return session.get(Task, task_id)

    task = await run_in_threadpool(load)
    if task is None:
        return JSONResponse({"response_action": "errors", "errors": {"outcome": "no such task"}})
    state = _object(_object(view.get("state")).get("values"))
    outcome, note, fields = blocks.modal_values(task, state)
    errors = blocks.modal_errors(
        task, blocks.field_specs(context.definitions, task), outcome, fields
    )
    if errors:
        return JSONResponse({"response_action": "errors", "errors": errors})
    _in_background(interactions.handle_view_submission(slack, task_id, outcome, note, fields))
    return Response(status_code=200)


@router.post("/commands", responses=problems(400, 401, 404, 503))
async def slack_commands(request: Request, context: Context) -> Response:
    """`/duly tasks`, `/duly alerts`, `/duly report` (anything else: how to use it)."""
    body, token, first = await _verified(request, context)
    form = _form(body)
    if not first:
        return Response(status_code=200)
    slack = interactions.SlackRequest(
        context=context,
        bot_token=token,
        slack_user=form.get("user_id", ""),
        response_url=form.get("response_url") or None,
    )

    async def run() -> None:
        def reply() -> str:
            try:
                who = interactions.principal(slack)
            except interactions.NotLinked as exc:
                return str(exc)
            return commands.answer(context, who, form.get("text", ""))

        await interactions.respond(slack, await run_in_threadpool(reply))

    _in_background(run())
    return Response(status_code=200)


async def background_done() -> None:
    """Wait for the Slack work running in the background (tests; a graceful shutdown)."""
    while _running:
        await asyncio.gather(*list(_running), return_exceptions=True)
