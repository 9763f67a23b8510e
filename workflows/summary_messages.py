"""What `WeeklySummaryWorkflow` receives and passes on to its activity, and what comes back.

Pure pydantic models, shared by the workflow (through its sandbox), its activity
(activities/summary.py) and whoever starts it (`duly.summary.start_week`, `duly summary --send`).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

WEEKLY_SUMMARY_WORKFLOW = "WeeklySummaryWorkflow"


class WeeklySummaryInput(BaseModel):
    """Which week to summarise, for whom.

    Attributes:
        week: The ISO week, e.g. `2026-W48`.
        managers: Only these managers; None: everyone who manages a team.
        now: When the summary is made (open breaches are judged at it): the workflow's time.
    """

    week: str
    managers: list[str] | None = None
    now: datetime | None = None


class WeeklySummaryResult(BaseModel):
    """What was queued: the channels per manager (empty when already queued before)."""

    week: str
    queued: dict[str, list[str]] = Field(default_factory=dict)
