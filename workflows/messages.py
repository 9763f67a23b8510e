"""What callers send to a process instance, and what they can read back.

`ProcessInput` starts an instance (and carries its state across continue-as-new); events arrive
as the `event` signal; a rep completes a task through the `complete_task` update, a manager
hands it to someone else through `reassign_task`; the `state` query returns the live
`InstanceState`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from activities.messages import SlaEvent
from duly.language.compiler import CompiledProcess

WORKFLOW_NAME = "ProcessWorkflow"

# Why an update on a task was refused: the `type` of the ApplicationError it is rejected with
TASK_NOT_OPEN = "TaskNotOpen"  # completed, cancelled or replaced: the caller's view is stale
INVALID_REQUEST = "InvalidTaskRequest"  # unknown outcome, bad field, nobody to hand it to


def closed_as(status: str, outcome: str | None, by: str | None) -> str:
    """How a task no longer open was closed: `completed (lost by ben)`, `cancelled`.

    Said alike by the store's check and by the instance, which knows before the store does.
    """
    if status != "completed":
        return status
    return f"completed ({outcome} by {by})" if by else f"completed ({outcome})"


def workflow_id(process: str, business_key: str) -> str:
    """One live instance per business key: `<process>/<business key>`."""
    return f"{process}/{business_key}"


def instance_id(workflow_id: str, first_run_id: str) -> str:
    """One id per instance ever, though a key may start again after its instance ended.

    Tasks are `<instance>/<step>/<visit>`, so the workflow id of any task or instance is
    everything before its last one (instance) or three (task) `/`-separated parts.
    """
    # run ids are UUIDv7: the head is a timestamp, the tail random
    return f"{workflow_id}/{first_run_id.replace('-', '')[-12:]}"


def workflow_of(task_or_instance: str, *, task: bool) -> str:
    """The workflow id behind a task id or an instance id."""
    return task_or_instance.rsplit("/", 3 if task else 1)[0]


class EventInput(BaseModel):
    """An inbound event: `{id, type, data}`; the id makes redelivery harmless."""

    id: str
    type: str
    data: dict[str, Any] = Field(default_factory=dict)
    # when it happened at the source; None: when duly received it
    occurred_at: datetime | None = None


class CompleteTaskInput(BaseModel):
    """A rep completes the open task with one of its outcomes (and its declared fields)."""

    task_id: str
    outcome: str
    note: str | None = None
    fields: dict[str, Any] = Field(default_factory=dict)
    by: str | None = None


class CompleteTaskResult(BaseModel):
    """The task that was completed and the step the instance moves to."""

    task_id: str
    outcome: str
    next_step: str


class ReassignTaskInput(BaseModel):
    """A manager hands the open task to someone else."""

    task_id: str
    to: str
    by: str | None = None


class ReassignTaskResult(BaseModel):
    """The task's assignee before and after."""

    task_id: str
    assignee: str
    previous: str | None = None


class OpenTask(BaseModel):
    """The task an instance waits on."""

    task_id: str
    step: str
    visit: int
    title: str
    assignee: str | None = None
    team: str | None = None
    outcomes: list[str] = Field(default_factory=list)
    fields: dict[str, str] = Field(default_factory=dict)
    opened_at: datetime
    due_at: datetime | None = None


class ClockState(BaseModel):
    """An SLA clock: a step's own (`step:<id>`) or a process-level one.

    Time counted so far is kept in `counted_seconds` (business seconds for business-time SLAs,
    wall seconds otherwise), so a pause and a change of target both keep what has elapsed.
    """

    name: str
    status: Literal["running", "paused", "stopped"] = "running"
    step: str | None = None
    visit: int = 0
    business: bool = True
    total_seconds: float = 0.0
    counted_seconds: float = 0.0
    running_since: datetime | None = None
    started_at: datetime
    due_at: datetime | None = None
    target: str = ""  # the `by:` value the target was chosen by, or "" for a fixed one
    rungs_done: int = 0  # rungs of the ladder already run, in order
    breached_at: datetime | None = None
    stopped_at: datetime | None = None
    met: bool | None = None
    # when duly learnt of the event that started it, if that was after `started_at`: the
    # event was late, and points of the ladder already past fire at once, marked late-arriving
    received_at: datetime | None = None
    # its pauses, so a new target of the other kind (wall time for business time) can recount
    # what it ran in that kind; a pause from before duly kept them counts as time run
    paused_since: datetime | None = None
    pauses: list[tuple[datetime, datetime]] = []


class NextRung(BaseModel):
    """The next rung of a ladder and when it fires."""

    clock: str
    rung: int
    at: datetime
    action: str


class HistoryEntry(BaseModel):
    """One line of an instance's story: a step visited, an event, a clock moment."""

    at: datetime
    kind: str
    step: str | None = None
    detail: str = ""


class InstanceState(BaseModel):
    """Everything an instance knows; returned by the `state` query, carried by continue-as-new."""

    instance_id: str
    process: str
    version: int
    hash: str
    business_key: str
    status: Literal["running", "completed", "failed"] = "running"
    result: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    step: str | None = None
    visits: dict[str, int] = Field(default_factory=dict)
    task: OpenTask | None = None
    clocks: dict[str, ClockState] = Field(default_factory=dict)
    next_rung: NextRung | None = None
    history: list[HistoryEntry] = Field(default_factory=list)
    sla_events: list[SlaEvent] = Field(default_factory=list)
    sla_events_written: int = 0
    seen_events: list[str] = Field(default_factory=list)
    started_at: datetime | None = None
    wake_at: datetime | None = None  # a wait step's wake instant, while it waits
    wake_event: str | None = None  # the event that ends that wait early (`until:`), if any


class ProcessInput(BaseModel):
    """Start an instance of a compiled definition (or resume one after continue-as-new)."""

    definition: CompiledProcess
    business_key: str
    data: dict[str, Any] = Field(default_factory=dict)
    event_id: str | None = None
    # when the starting event happened at the source; None: when the instance started
    occurred_at: datetime | None = None
    state: InstanceState | None = None
    history_limit: int = 5_000  # continue-as-new past this many history events


class ProcessResult(BaseModel):
    """How an instance ended."""

    status: Literal["completed", "failed"]
    result: str
    data: dict[str, Any] = Field(default_factory=dict)
