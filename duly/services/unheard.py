"""Events no published process listened to, for admins: listed, and replayed once heard."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from duly import unheard
from duly.services.context import ServiceContext
from duly.services.events import receive_event
from duly.services.schemas import EventIn
from duly.store.models import UnheardEvent


class UnheardOut(BaseModel):
    """An event kept because no published process listened to its type."""

    id: str
    type: str
    data: dict[str, object]
    occurred_at: datetime | None
    received_at: datetime
    times: int = Field(description="how often it was sent while unheard")
    heard_now: bool = Field(description="a published process listens to its type now")
    replayed_at: datetime | None
    replay_status: str | None
    instances: list[str]


class ReplayOut(BaseModel):
    """One event replayed through the receive path."""

    event_id: str
    type: str
    status: str
    instances: list[str]


def listed(context: ServiceContext, *, pending_only: bool = False) -> list[UnheardOut]:
    """The kept events, newest first."""
    definitions = context.definitions
    with context.read() as session:
        rows = unheard.listed(session, pending_only=pending_only)
    return [
        UnheardOut(
            **row.model_dump(exclude={"data"}),
            data=row.data,
            heard_now=unheard.heard(definitions, row.type),
        )
        for row in rows
    ]


async def replay(context: ServiceContext) -> list[ReplayOut]:
    """Replay every kept event a published process listens to now, once each."""
    with context.read() as session:
        rows = unheard.listed(session, pending_only=True, limit=10_000)

    async def receive(row: UnheardEvent) -> tuple[str, list[str]]:
        event = EventIn(id=row.id, type=row.type, data=row.data, occurred_at=row.occurred_at)
        out = await receive_event(context, event)  # the very path POST /api/events takes
        return out.status, out.instances

    def mark(event_id: str, status: str, instances: list[str]) -> None:
        with context.write() as session:
            unheard.mark_replayed(session, event_id, status, instances)

    done = await unheard.replay(rows, context.definitions, receive, mark)
    return [ReplayOut(**vars(item)) for item in done]
