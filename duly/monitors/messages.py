"""What `MonitorWorkflow` receives and sends to its activities, and what comes back.

Pure pydantic models, imported by the workflow (passed through its sandbox): one `...Input`
in, one `...Result` out. Every input carries the monitor and the slot it checks, the natural
key of what the check writes, so a retry finds the rows the first attempt wrote.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel

from duly.language.model import MonitorSpec

MONITOR_WORKFLOW = "MonitorWorkflow"

Period = Literal["day", "week", "month"]
State = Literal["ok", "alerting"]
Transition = Literal["crossed", "recovered"]


class MonitorInput(BaseModel):
    """One check of a monitor, for one time slot.

    Attributes:
        monitor: The monitor as defined (its measure, filter, threshold and notify list).
        slot: The time slot this check is for, as in the workflow id: `2026-11-30T09:15Z`.
        manager_team: The team whose manager `notify: manager` means: the filter's team,
            else the filtered process's team; None when neither names one.
        period: What "this period" is for `attainment`: the process's goal period.
        timezone: Where the period's days begin (IANA name): the monitor's calendar, else
            the process's calendar, else UTC.
    """

    monitor: MonitorSpec
    slot: str
    manager_team: str | None = None
    period: Period = "week"
    timezone: str = "UTC"


class MeasureInput(BaseModel):
    """Measure a monitor's value as of `at`."""

    monitor: MonitorSpec
    at: datetime
    period: Period = "week"
    timezone: str = "UTC"


class MeasureResult(BaseModel):
    """The measured value; None when there is nothing to measure (no closed visit yet)."""

    value: float | None


class RecordCheckInput(BaseModel):
    """Record one check and, when it crosses the threshold or recovers, alert once."""

    monitor: MonitorSpec
    slot: str
    value: float | None
    checked_at: datetime
    manager_team: str | None = None


class RecordCheckResult(BaseModel):
    """The monitor's state after the check, and the alert it raised, if any.

    Attributes:
        state: ok or alerting, after this check.
        transition: `crossed` or `recovered` when this check changed the state.
        notified: Who was alerted about the transition.
        repeated: True when the slot had been recorded already (a retry): nothing changed.
    """

    state: State
    transition: Transition | None = None
    notified: list[str] = []
    repeated: bool = False


class MonitorResult(BaseModel):
    """What one check found: the value and the state it left the monitor in."""

    monitor: str
    slot: str
    value: float | None
    state: State
    transition: Transition | None = None
    notified: list[str] = []
