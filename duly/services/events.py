"""Inbound events: check the signature, drop what was received before, deliver the rest.

An event is delivered first and recorded after (in `InboundEvent`, once per id). Delivery is
itself idempotent by event id (an instance ignores an event id it has seen; a start for a key
that is already running becomes a signal with the same id), so an event whose delivery failed
half-way is simply resent by the sender and completes, while one recorded is never delivered
again: a resent event changes nothing.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from temporalio.common import Priority

from duly import client as duly_client
from duly import unheard
from duly.services.context import ServiceContext
from duly.services.errors import NotAuthenticated, Unavailable, translated
from duly.services.schemas import EventIn, EventOut
from duly.services.signing import SignatureError, verify
from duly.store.crud import insert_if_absent
from duly.store.models import InboundEvent
from workflows.messages import EventInput
from workflows.priority import BULK


def check_signature(
    context: ServiceContext, timestamp: str | None, signature: str | None, body: bytes
) -> None:
    """Refuse a request that is not signed with the shared secret, or too old.

    Raises:
        Unavailable: No `DULY_EVENTS_SECRET` is set, so no event can be trusted.
        NotAuthenticated: Unsigned, badly signed, or outside the replay window.
    """
    secret = context.settings.events_secret
    if not secret:
        raise Unavailable(
            "inbound events are off: set DULY_EVENTS_SECRET (a long random string shared with "
            "the sender) and restart duly"
        )
    try:
        verify(secret, timestamp, signature, body)
    except SignatureError as exc:
        raise NotAuthenticated(str(exc)) from None


async def receive_event(context: ServiceContext, event: EventIn, *, bulk: bool = False) -> EventOut:
    """Deliver an event unless its id was received before.

    Events of a backfill (`bulk`) start their instances at bulk priority (`workflows.priority`),
    so their start-up waits behind live work.

    It starts an instance of every process whose `trigger.event` is its type, and goes to the
    live instances it concerns (by business key): `on:` events, `wait ... until:` events and
    data updates.

    Raises:
        EventLimitError: The data is over one of duly's limits (the API answers 422, naming
            the field); nothing was recorded or started.
        Invalid: The event triggers a process but its data does not give the business key
            (or gives one that cannot name an instance).
        Unavailable: Temporal did not answer; the event was not recorded, so resending works.
    """
    if await run_in_threadpool(_received, context, event.id):
        return EventOut(status="duplicate", event_id=event.id, instances=[])
    client = await context.temporal.get()
    with translated():  # an EventLimitError is raised before Temporal is asked anything
        touched = await duly_client.send_event(
            client,
            context.definitions,
            EventInput(
                id=event.id, type=event.type, data=event.data, occurred_at=event.occurred_at
            ),
            task_queue=context.settings.task_queue,
            priority=BULK if bulk else Priority.default,
        )
    if not touched and not unheard.heard(context.definitions, event.type):
        # no process names it and no live instance took it: kept for replay, id unconsumed
        return await run_in_threadpool(_keep_unheard, context, event)
    if not await run_in_threadpool(_record, context, event, touched):
        # received twice at once: the other request recorded it (delivery was idempotent)
        return EventOut(status="duplicate", event_id=event.id, instances=[])
    return EventOut(status="accepted", event_id=event.id, instances=touched)


def _keep_unheard(context: ServiceContext, event: EventIn) -> EventOut:
    """Keep an unheard event for admins; its id stays unconsumed (a resend is not a duplicate)."""
    with context.write() as session:
        unheard.keep(
            session,
            event_id=event.id,
            event_type=event.type,
            data=event.data,
            occurred_at=event.occurred_at,
        )
    return EventOut(
        status="unheard", event_id=event.id, instances=[], detail=unheard.message(event.type)
    )


def _received(context: ServiceContext, event_id: str) -> bool:
    with context.read() as session:
        return session.get(InboundEvent, event_id) is not None


def _record(context: ServiceContext, event: EventIn, touched: list[str]) -> bool:
    row = InboundEvent(
        id=event.id, type=event.type, data=event.data, instance_id=next(iter(touched), None)
    )
    with context.write() as session:
        return insert_if_absent(session=session, row=row)
