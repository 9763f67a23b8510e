"""A request to `POST /api/sources/<name>`: verified, read, mapped, delivered like /api/events.

Nothing is delivered before the whole request is verified, read and mapped, so a bad signature,
a malformed body or an unmappable change records nothing. Then each event goes through the one
inbound path (`duly.services.events.receive_event`), in order: its dedup, limits and
delivery. An event that fails (Temporal down) stops the request with its error (503), so the CRM
delivers the whole batch again; the events before it are then duplicates and change nothing.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

import httpx
import structlog

from duly import metrics
from duly.language.sources import SECRET_IS, SourceSpec
from duly.services import events
from duly.services.context import ServiceContext
from duly.services.errors import Invalid, Malformed, NotAuthenticated, ServiceError, Unavailable
from duly.services.schemas import EventIn
from duly.services.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER
from duly.sources import parse, verify
from duly.sources.changes import Change
from duly.sources.hubspot_api import FetchError, fetch_properties
from duly.sources.mapping import Ignored, MappingError, map_change

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Incoming:
    """The parts of an HTTP request a source's scheme signs."""

    method: str
    url: str
    headers: Mapping[str, str]  # case-insensitive (Starlette's, httpx's)
    body: bytes


@dataclass
class Outcome:
    """What became of a request's changes."""

    accepted: int = 0
    duplicates: int = 0
    ignored: list[str] = field(default_factory=list)
    instances: list[str] = field(default_factory=list)
    salesforce_ack: bool = False


async def run_all(work: Iterable[Awaitable[None]]) -> None:
    """Run every job to its end, then raise the first failure (none is left running)."""
    for result in await asyncio.gather(*work, return_exceptions=True):
        if isinstance(result, BaseException):
            raise result


CONCURRENCY = 8
"""Records handled at once: HubSpot waits 5 s for an answer to a batch of up to 100 events."""


async def _deliver(
    context: ServiceContext,
    source: SourceSpec,
    mapped: list[tuple[str, EventIn]],
    outcome: Outcome,
) -> None:
    """Deliver each record's events in their order; different records side by side.

    A record's creation and its later change in one batch must arrive in that order (the change
    goes to the instance the creation starts); different records need no order.
    """
    by_record: dict[str, list[EventIn]] = {}
    for record, event in mapped:
        by_record.setdefault(record, []).append(event)
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one_record(record_events: list[EventIn]) -> None:
        async with gate:
            for event in record_events:
                result = await events.receive_event(context, event)
                metrics.SOURCE_EVENTS.labels(source=source.source, outcome="received").inc()
                if result.status == "duplicate":
                    outcome.duplicates += 1
                else:
                    outcome.accepted += 1
                    outcome.instances.extend(result.instances)

    await run_all(one_record(group) for group in by_record.values())


def secret_of(source: SourceSpec) -> str | None:
    """The source's secret, read from the environment variable it names (None if unset)."""
    return os.environ.get(source.secret) if source.secret else None


async def receive(context: ServiceContext, source: SourceSpec, request: Incoming) -> Outcome:
    """Verify, read and map a request, then deliver its events.

    Raises:
        NotAuthenticated: A bad, stale or missing signature; an organization not allowed.
        Malformed: The body is not in the CRM's documented shape.
        Invalid: A change the source's rules cannot map (a template failed).
        Unavailable: The secret is not set, or Temporal (or HubSpot's API) did not answer.
    """
    try:
        changes, ack = _verified_changes(source, request)
        events_in, ignored = await _mapped(context, source, changes)
        outcome = Outcome(ignored=ignored, salesforce_ack=ack)
        if ignored:
            metrics.SOURCE_EVENTS.labels(source=source.source, outcome="ignored").inc(len(ignored))
        await _deliver(context, source, events_in, outcome)
    except ServiceError:
        # the whole request is answered with the error: the CRM sends it again, or gives up
        metrics.SOURCE_EVENTS.labels(source=source.source, outcome="refused").inc()
        raise
    log.info(
        "source_request",
        source=source.source,
        accepted=outcome.accepted,
        duplicates=outcome.duplicates,
        ignored=len(ignored),
    )
    return outcome


def _secret(source: SourceSpec) -> str:
    secret = secret_of(source)
    if not secret:
        raise Unavailable(
            f"source '{source.source}' is off: set {source.secret or 'its secret variable'} "
            f"({SECRET_IS[source.crm]}) and restart duly"
        )
    return secret


Reader = Callable[[SourceSpec, Incoming], tuple[list[Change], bool]]
"""Checks a request in one CRM's scheme and reads its changes (and whether to answer an Ack)."""


def _verified_changes(source: SourceSpec, request: Incoming) -> tuple[list[Change], bool]:
    """The request's changes once its signature holds; and whether to answer a SOAP Ack."""
    try:
        return READERS[source.crm](source, request)
    except verify.SignatureError as exc:
        raise NotAuthenticated(str(exc)) from None
    except parse.PayloadError as exc:
        raise Malformed(str(exc)) from None


def _hubspot(source: SourceSpec, request: Incoming) -> tuple[list[Change], bool]:
    headers, secret = request.headers, _secret(source)
    uri = source.url or request.url
    if headers.get("X-HubSpot-Signature-v3") or not source.accept_v2:
        verify.hubspot_v3(
            secret,
            request.method,
            uri,
            request.body,
            headers.get("X-HubSpot-Request-Timestamp"),
            headers.get("X-HubSpot-Signature-v3"),
        )
    else:
        if headers.get("X-HubSpot-Signature-Version", "").lower() != "v2":
            raise verify.SignatureError("no X-HubSpot-Signature-v3 or v2 signature")
        verify.hubspot_v2(
            secret, request.method, uri, request.body, headers.get("X-HubSpot-Signature")
        )
    return parse.hubspot(request.body), False


def _pipedrive(source: SourceSpec, request: Incoming) -> tuple[list[Change], bool]:
    verify.pipedrive_basic(_secret(source), request.headers.get("Authorization"))
    return parse.pipedrive(request.body), False


def _standard(source: SourceSpec, request: Incoming) -> tuple[list[Change], bool]:
    headers = request.headers
    verify.standard_webhooks(
        _secret(source),
        headers.get("webhook-id"),
        headers.get("webhook-timestamp"),
        headers.get("webhook-signature"),
        request.body,
    )
    return parse.standard(request.body, headers.get("webhook-id", "")), False


def _duly(source: SourceSpec, request: Incoming) -> tuple[list[Change], bool]:
    verify.verify_duly_source(
        _secret(source),
        request.headers.get(TIMESTAMP_HEADER),
        request.headers.get(SIGNATURE_HEADER),
        request.body,
    )
    return parse.duly(request.body), False


def _salesforce(source: SourceSpec, request: Incoming) -> tuple[list[Change], bool]:
    content_type = request.headers.get("Content-Type", "").lower()
    if "xml" in content_type or request.body.lstrip().startswith(b"<"):
        if not source.organization_ids:
            raise NotAuthenticated(
                f"source '{source.source}' takes no Outbound Messages: list the organization "
                "ids allowed under organization_ids"
            )
        organization, changes = parse.salesforce_outbound(request.body)
        # 15- and 18-character ids name the same org: compare the first 15
        allowed = {org[:15] for org in source.organization_ids}
        if organization[:15] not in allowed:
            raise NotAuthenticated(
                f"OrganizationId '{organization}' is not in the source's organization_ids"
            )
        return changes, True
    if not source.secret:
        raise NotAuthenticated(
            f"source '{source.source}' takes no Flow callouts: give it a 'secret' the Flow "
            f"sends in {source.secret_header}"
        )
    verify.shared_secret(
        _secret(source), request.headers.get(source.secret_header), source.secret_header
    )
    return parse.salesforce_flow(request.body), False


READERS: dict[str, Reader] = {
    "hubspot": _hubspot,
    "salesforce": _salesforce,
    "pipedrive": _pipedrive,
    "standard-webhooks": _standard,
    "duly": _duly,
}


async def _mapped(
    context: ServiceContext, source: SourceSpec, changes: list[Change]
) -> tuple[list[tuple[str, EventIn]], list[str]]:
    """Every change mapped (records fetched first where the source asks), or an error."""
    await _fetch_records(source, changes)
    mapped: list[tuple[str, EventIn]] = []
    ignored: list[str] = []
    for change in changes:
        try:
            result = map_change(source, change, context.definitions.org)
        except MappingError as exc:
            raise Invalid(f"source '{source.source}' cannot map a change: {exc}") from None
        if isinstance(result, Ignored):
            ignored.append(result.reason)
        else:
            mapped.append((f"{change.object}:{change.object_id}", result))
    return mapped, ignored


async def _fetch_records(source: SourceSpec, changes: list[Change]) -> None:
    wanted = [
        c
        for c in changes
        if c.object in source.objects and source.objects[c.object].fetch and c.change != "deleted"
    ]
    if not wanted:
        return
    gate = asyncio.Semaphore(CONCURRENCY)

    async def fetch(client: httpx.AsyncClient, change: Change) -> None:
        async with gate:
            try:
                fetched = await fetch_properties(
                    client, change.object, change.object_id, source.objects[change.object].fetch
                )
            except FetchError as exc:
                raise (Unavailable if exc.retry else Invalid)(str(exc)) from None
        # what the webhook says changed is newer than what the API read back
        change.record = {**fetched, **change.record}

    async with httpx.AsyncClient(timeout=10.0) as client:
        await run_all(fetch(client, change) for change in wanted)
