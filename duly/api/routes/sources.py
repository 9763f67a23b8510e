"""A CRM's own webhooks, one endpoint per source: `POST /api/sources/<name>`."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field

from duly.api.deps import Context
from duly.api.routes import problems
from duly.services.errors import NotFound
from duly.sources.receive import Incoming, receive

router = APIRouter(tags=["sources"])

SALESFORCE_ACK = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">'
    "<soapenv:Body>"
    '<notificationsResponse xmlns="http://soap.sforce.com/2005/09/outbound">'
    "<Ack>true</Ack>"
    "</notificationsResponse>"
    "</soapenv:Body>"
    "</soapenv:Envelope>"
)
"""What a Salesforce Outbound Message needs back to stop resending it (its WSDL's response)."""


class SourceOut(BaseModel):
    """What became of a CRM's request."""

    source: str
    accepted: int = Field(description="events delivered now")
    duplicates: int = Field(description="events received before: nothing changed")
    ignored: list[str] = Field(description="why each change no rule maps was left alone")
    instances: list[str] = Field(description="instances started or reached")


@router.post(
    "/api/sources/{name}",
    response_model=SourceOut,
    responses={
        **problems(400, 401, 404, 413, 422, 503),
        200: {"content": {"text/xml": {}}, "description": "Salesforce Outbound Messages: Ack"},
    },
)
async def receive_from_source(name: str, request: Request, context: Context) -> Response:
    """Take a CRM's webhook, signed in the CRM's own scheme (see docs/connect.md).

    2xx once every event is delivered or was received before; 401 for a bad or stale signature
    and 400/422 for a body that cannot be read or mapped (nothing recorded); 503 when Temporal
    is down, so the CRM delivers it again.
    """
    source = context.definitions.sources.get(name)
    if source is None:
        known = ", ".join(sorted(context.definitions.sources)) or "none"
        raise NotFound(f"no source named '{name}' in definitions/sources/ (known: {known})")
    incoming = Incoming(
        method=request.method,
        url=str(request.url),
        headers=request.headers,
        body=await request.body(),
    )
    outcome = await receive(context, source, incoming)
    if outcome.salesforce_ack:
        return Response(SALESFORCE_ACK, media_type="text/xml")
    body = SourceOut(
        source=name,
        accepted=outcome.accepted,
        duplicates=outcome.duplicates,
        ignored=outcome.ignored,
        instances=outcome.instances,
    )
    return Response(body.model_dump_json(), media_type="application/json")
