"""One change to one CRM record, in the same shape whichever CRM reported it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass
class Change:
    """What the mapping's templates see about one CRM change.

    Attributes:
        object: The CRM's object type: `contact`, `deal`, `Lead`, `Case`, `person`...
        object_id: The record's id in the CRM.
        change: `created`, `updated`, `deleted`, `merged`, `restored`, `associated` (or the
            CRM's own word when it has no counterpart).
        key: What the CRM documents as unique for this change (the default event id).
        occurred_at: When it happened at the CRM (ISO 8601), if the CRM says.
        record: The record's fields the CRM sent (and, for HubSpot, those fetched).
        raw: The CRM's whole item, as sent.
    """

    object: str
    object_id: str
    change: str
    key: str
    occurred_at: str | None = None
    record: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)

    def context(self) -> dict[str, Any]:
        """The names a rule's templates read."""
        return {
            "object": self.object,
            "object_id": self.object_id,
            "change": self.change,
            "occurred_at": self.occurred_at or "",
            "record": self.record,
            "event": self.raw,
        }


def from_epoch_ms(value: Any) -> str | None:
    """An ISO 8601 UTC moment from epoch milliseconds (HubSpot's `occurredAt`)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC).isoformat()
    except (ValueError, OverflowError, OSError):
        return None  # not a moment: a rule's occurred_at (or receipt) gives the time
