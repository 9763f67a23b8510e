"""What duly writes to a CRM, the same for every CRM."""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel


class Activity(BaseModel):
    """A task or a note to log on a record.

    Attributes:
        kind: `task` (open, or completed with `done`) or `note`.
        key: duly's idempotency key (`<instance>/<step>/<visit>`): one activity per key.
        subject: The task's title (notes have none).
        body: The task's description or the note's text.
        due: When the task is due (tasks), or when it happened (notes, completed tasks).
        done: A completed task: the outcome logged, not a to-do.
        owner: The CRM user id it is assigned to.
    """

    kind: Literal["task", "note"]
    key: str
    subject: str = ""
    body: str = ""
    due: datetime
    done: bool = True
    owner: str | None = None

    @property
    def token(self) -> str:
        """The key as 32 hex characters: safe in a URL or a field that allows few characters."""
        return hashlib.sha256(self.key.encode()).hexdigest()[:32]


class Written(BaseModel):
    """What the CRM has now: the record or activity's id, and whether duly found it there."""

    id: str = ""
    existed: bool = False
    detail: str = ""
