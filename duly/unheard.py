"""Events no published process listens to: kept for admins, their ids not consumed, replayable.

An event whose type no published process starts on or reacts to (`trigger`, `on:`, `until:`,
`completed_by:`, clocks, a monitor's gauge), and that reached no live instance either (a data
update for a running instance is delivered as ever), is not recorded as received: it is kept
in `unheard_events` (once per id; a resend counts `times`), counted in `/metrics`, and answered
202 so the sender knows. Once a process listens to its type (after `duly publish`), an admin
replays it: it goes through the same receive path as any event, and is marked replayed so it
runs once.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import Counter
from sqlmodel import Session, col, select

from duly.client import listens_to
from duly.language.compiler import CompiledProcess
from duly.language.loader import Definitions
from duly.metrics import count_on_commit
from duly.store.crud import insert_if_absent
from duly.store.models import UnheardEvent
from duly.store.types import utc_now

UNHEARD_EVENTS = Counter(
    "duly_unheard_events",
    "Events no published process listens to (kept for replay, id not consumed).",
    ["type"],
)


def heard(definitions: Definitions, event_type: str) -> bool:
    """Whether a published process starts on, or reacts to, an event type (or a gauge reads it)."""
    monitors = definitions.monitors.values()
    if any(m.gauge is not None and m.gauge.event == event_type for m in monitors):
        return True
    return any(
        _triggered_by(process, event_type) or listens_to(process, event_type)
        for process in definitions.processes.values()
    )


def _triggered_by(process: CompiledProcess, event_type: str) -> bool:
    trigger = process.spec.trigger
    if trigger is None:
        return False
    events = getattr(trigger, "events", None) or [getattr(trigger, "event", None)]
    return event_type in events


def message(event_type: str) -> str:
    """What the sender is told."""
    return (
        f"no process listens to {event_type}: the event is kept for an admin to replay once one "
        "does, and its id is not consumed (sending it again later is safe)"
    )


def keep(
    session: Session,
    *,
    event_id: str,
    event_type: str,
    data: dict[str, object],
    occurred_at: datetime | None,
) -> None:
    """Keep an unheard event once per id; a resend counts `times` and keeps the first body."""
    row = UnheardEvent(id=event_id, type=event_type, data=data, occurred_at=occurred_at)
    if not insert_if_absent(session=session, row=row):
        stored = session.get_one(UnheardEvent, event_id)
        stored.times += 1
        if stored.replayed_at is not None:  # unheard again after a replay: keep it again
            stored.replayed_at, stored.replay_status, stored.instances = None, None, []
        session.add(stored)
    count_on_commit(session, UNHEARD_EVENTS.labels(event_type))


def listed(session: Session, *, pending_only: bool = False, limit: int = 200) -> list[UnheardEvent]:
    """Unheard events, newest first; `pending_only` leaves out the replayed ones."""
    query = select(UnheardEvent)
    if pending_only:
        query = query.where(col(UnheardEvent.replayed_at).is_(None))
    return list(session.exec(query.order_by(col(UnheardEvent.received_at).desc()).limit(limit)))


@dataclass
class Replayed:
    """One replayed event: its id, type, the receive path's status and the instances reached."""

    event_id: str
    type: str
    status: str
    instances: list[str]


Receive = Callable[[UnheardEvent], Awaitable[tuple[str, list[str]]]]
"""Sends a kept event through the receive path; returns (status, instances)."""


async def replay(
    rows: list[UnheardEvent],
    definitions: Definitions,
    receive: Receive,
    mark: Callable[[str, str, list[str]], None],
) -> list[Replayed]:
    """Replay the kept events a published process now listens to, each once.

    Args:
        rows: Pending unheard events.
        definitions: The published set now.
        receive: The same receive path as `POST /api/events`.
        mark: Records a replay (id, status, instances) so it is not replayed again.
    """
    done = []
    for row in rows:
        if row.replayed_at is not None or not heard(definitions, row.type):
            continue
        status, instances = await receive(row)
        if status == "unheard":
            continue
        mark(row.id, status, instances)
        done.append(Replayed(row.id, row.type, status, instances))
    return done


def mark_replayed(session: Session, event_id: str, status: str, instances: list[str]) -> None:
    """Record that an unheard event went through the receive path."""
    row = session.get_one(UnheardEvent, event_id)
    row.replayed_at, row.replay_status, row.instances = utc_now(), status, instances
    session.add(row)
