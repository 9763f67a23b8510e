"""Inbound events from a CRM (or a relay in front of it), signed with the shared secret."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from duly.api.deps import Context
from duly.api.json_body import read_json
from duly.api.routes import problems
from duly.services import events
from duly.services.schemas import EventIn, EventOut
from duly.services.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER

router = APIRouter(tags=["events"])


@router.post(
    "/api/events",
    response_model=EventOut,
    response_model_exclude_none=True,  # `detail` only when an event was not delivered
    responses={
        **problems(400, 401, 413, 422, 503),
        202: {"model": EventOut, "description": "no published process listens to its type"},
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": EventIn.model_json_schema()}},
        }
    },
)
async def receive_event(
    request: Request,
    response: Response,
    context: Context,
    timestamp: Annotated[
        str | None,
        Header(alias=TIMESTAMP_HEADER, description="Unix time (seconds) the request was signed"),
    ] = None,
    signature: Annotated[
        str | None,
        Header(
            alias=SIGNATURE_HEADER,
            description="sha256=<hex HMAC-SHA256 of '<timestamp>.<body>' with the shared secret>",
        ),
    ] = None,
) -> EventOut:
    """Take an event `{id, type, data}`: start the instances it triggers, steer the live ones.

    Signed with HMAC-SHA256 (see docs/events.md); 401 when unsigned, badly signed or older than
    the replay window. A resent event id answers 200 with status `duplicate` and changes
    nothing. Data over duly's limits (docs/events.md, "Limits") answers 422 naming the field,
    before anything is recorded or started. An event no published process listens to answers
    202 with status `unheard`: it is kept for admins to replay, and its id is not consumed.
    """
    body = await request.body()
    events.check_signature(context, timestamp, signature, body)
    document = await run_in_threadpool(read_json, body)  # up to ~0.1 s for a hostile body
    try:
        event = EventIn.model_validate(document)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None
    received = await events.receive_event(context, event)
    if received.status == "unheard":
        response.status_code = 202  # kept, not delivered: the sender may resend the same id
    return received
