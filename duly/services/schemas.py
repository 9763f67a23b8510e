"""What the services take and return, as pydantic models.

The JSON API's OpenAPI schema is made from them; the CLI prints them with `--json`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from duly.occurred import check_occurred_at
from duly.store.models import InstancePublic, TaskPublic
from workflows.messages import InstanceState

T = TypeVar("T")

MAX_PAGE = 200


class Page(BaseModel, Generic[T]):
    """One page of a listing."""

    items: list[T]
    total: int = Field(description="how many match, over all pages")
    limit: int
    offset: int


# --- tasks -------------------------------------------------------------------------------------


class TaskView(TaskPublic):
    """A task, with the business time left until it is due."""

    business_seconds_left: float | None = Field(
        default=None,
        description="open time of the process's calendar until due; negative once overdue "
        "(the open time since it was due); null without a due time",
    )
    overdue: bool = False


class CompleteTaskRequest(BaseModel):
    """Complete a task with one of its outcomes (and the fields its step declares)."""

    model_config = ConfigDict(extra="forbid")

    outcome: str = Field(min_length=1, max_length=100, examples=["reached"])
    note: str | None = Field(default=None, max_length=10_000)
    fields: dict[str, Any] = Field(default_factory=dict, examples=[{"budget": 25000}])


class CompleteTaskResponse(BaseModel):
    """The completed task and the step its instance moves to."""

    task_id: str
    outcome: str
    next_step: str


class ReassignTaskRequest(BaseModel):
    """Hand a task to someone else."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=100, description="a user id", examples=["ben"])


class ReassignTaskResponse(BaseModel):
    """The task's assignee before and after."""

    task_id: str
    assignee: str
    previous: str | None = None


# --- instances ---------------------------------------------------------------------------------


class StartInstanceRequest(BaseModel):
    """Start an instance of a process; its business key comes from the data."""

    model_config = ConfigDict(extra="forbid")

    process: str = Field(min_length=1, max_length=100, examples=["quote-follow-up"])
    data: dict[str, Any] = Field(
        default_factory=dict,
        examples=[{"quote": {"id": "Q-1", "number": "Q-1", "amount": 12000}, "owner": "ana"}],
    )


class StartInstanceResponse(BaseModel):
    """The started instance."""

    instance_id: str


class StepFactView(BaseModel):
    """One row of the step-outcome fact table: a step visit, how it ended, its SLA."""

    step: str
    kind: str
    visit: int
    assignee: str | None = None
    team: str | None = None
    opened_at: datetime
    due_at: datetime | None = None
    closed_at: datetime
    outcome: str | None = None
    sla_met: bool | None = None
    breached_at: datetime | None = None
    highest_rung: int | None = None
    business_seconds: float | None = None


class SlaEventView(BaseModel):
    """One moment of an SLA clock: start, pause, warning, breach, stop..."""

    seq: int
    clock: str
    kind: str
    at: datetime
    step: str | None = None
    visit: int | None = None
    due_at: datetime | None = None
    detail: str = ""


class InstanceDetail(BaseModel):
    """An instance: its row, its live state while it runs, and its history."""

    instance: InstancePublic
    state: InstanceState | None = Field(
        default=None, description="the live state (the workflow's query), while it runs"
    )
    state_error: str | None = Field(
        default=None, description="why the live state is missing although it runs"
    )
    tasks: list[TaskPublic]
    facts: list[StepFactView]
    sla_events: list[SlaEventView]


# --- events ------------------------------------------------------------------------------------


class EventIn(BaseModel):
    """An inbound event: `{id, type, data}`; the id makes a resent event harmless."""

    id: str = Field(min_length=1, max_length=200, examples=["evt-01HZX4"])
    type: str = Field(min_length=1, max_length=200, examples=["quote.sent"])
    data: dict[str, Any] = Field(default_factory=dict, examples=[{"quote": {"id": "Q-1"}}])
    occurred_at: datetime | None = Field(
        default=None,
        description="when it happened at the source (ISO 8601 with an offset); absent: on receipt",
        examples=["2026-12-01T14:05:00-05:00"],
    )

    @field_validator("occurred_at")
    @classmethod
    def _occurred_in_the_past(cls, value: datetime | None) -> datetime | None:
        # no offset, or further ahead than clock skew explains: refused (422) with the reason
        return None if value is None else check_occurred_at(value)


class EventOut(BaseModel):
    """What became of an event."""

    status: Literal["accepted", "duplicate", "unheard"] = Field(
        description="duplicate: this id was received before, and nothing changed; unheard (202): "
        "no published process listens to its type, so it was kept for replay, id not consumed"
    )
    event_id: str
    instances: list[str] = Field(description="instances started or reached (empty for a duplicate)")
    detail: str | None = Field(default=None, description="why an event was not delivered")


# --- alerts ------------------------------------------------------------------------------------

AlertState = Literal["open", "acknowledged", "resolved", "all"]
"""`open`: still needs action (neither acknowledged nor resolved); `resolved`: its task was
completed, cancelled or reassigned; `acknowledged`: someone acknowledged it; `all`."""
ALERT_STATES: tuple[str, ...] = ("open", "acknowledged", "resolved", "all")


# --- definitions -------------------------------------------------------------------------------


class DefinitionSummary(BaseModel):
    """A process definition, in short."""

    process: str
    title: str
    version: int
    hash: str
    calendar: str
    team: str | None = None
    trigger_event: str | None = None
    steps: int


class DefinitionDetail(DefinitionSummary):
    """A process definition, whole, with its flowchart."""

    description: str | None = None
    spec: dict[str, Any] = Field(description="the process as written (validated)")
    mermaid: str = Field(description="the flowchart as Mermaid source")
    svg: str = Field(description="the flowchart as a standalone SVG document (escaped text)")
