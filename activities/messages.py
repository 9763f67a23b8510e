"""What the process workflow sends to its activities, and what comes back.

One `...Input` in, one `...Result` out (pydantic, through the SDK's pydantic data converter).
Every input carries the natural key of what it writes (instance, step, visit, rung), so a retry
or a replay after a crash finds the row it already wrote instead of writing a second one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

STRICT = ConfigDict(extra="forbid")
"""For inputs that carry writes: a worker older than the workflow code that sent one refuses a
field it does not know (and the activity is retried until a newer worker takes it) instead of
dropping what that field was to write."""

DEFINITION_NOT_STORED = "DefinitionNotStored"
"""`start_instance` was not sent the definition, and the store does not hold it."""


class StartInstanceInput(BaseModel):
    """An instance began: record it (and its pinned definition) once.

    The definition's content (`source`, `compiled_json`) is sent only when the store lacks it
    (`DEFINITION_NOT_STORED`): normally it was published, and each history would carry it twice.
    """

    model_config = STRICT

    instance_id: str
    workflow_id: str = ""  # "<process>/<business key>": the live instance's address
    process: str
    version: int
    hash: str
    business_key: str
    source: str = ""
    compiled_json: str = ""
    data: dict[str, Any] = Field(default_factory=dict)
    started_at: datetime


class FinishInstanceInput(BaseModel):
    """An instance ended: its result (an end step's result, `loop-limit`, `failed`)."""

    model_config = STRICT

    instance_id: str
    status: Literal["completed", "failed"]
    result: str
    data: dict[str, Any] = Field(default_factory=dict)
    ended_at: datetime
    writes: StepWrites | None = None  # what the last steps left to write, in its transaction


class OpenTaskInput(BaseModel):
    """Open the task of one step visit, choosing its assignee by the step's `assign` rule."""

    model_config = STRICT

    task_id: str  # "<instance>/<step>/<visit>": the same visit always opens the same task
    instance_id: str
    process: str
    step: str
    visit: int
    title: str
    assign: str  # owner | user:<id> | round-robin:<team> | least-loaded:<team>
    team: str | None = None  # the process's team: owner falls back to round-robin over it
    owner: str | None = None  # the instance data's `owner`
    fields: dict[str, str] = Field(default_factory=dict)
    outcomes: list[str] = Field(default_factory=list)
    opened_at: datetime
    due_at: datetime | None = None
    # what the steps before left to write (the last task's close, its fact...): written in the
    # task's transaction; alone when no one can be assigned, so they stand all the same
    writes: StepWrites | None = None


class OpenTaskResult(BaseModel):
    """Who got the task."""

    task_id: str
    assignee: str | None
    team: str | None


class CloseTaskInput(BaseModel):
    """A task is done (or cancelled when an event moved the instance on)."""

    task_id: str
    status: Literal["completed", "cancelled"]
    outcome: str | None = None
    note: str | None = None
    closed_by: str | None = None
    closed_at: datetime


class RecordStepInput(BaseModel):
    """One row of the step-outcome fact table, unique on (instance, step, visit)."""

    instance_id: str
    process: str
    version: int
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
    # who held the task at close, when a reassignment after the breach moved it from `assignee`
    final_assignee: str | None = None
    # opened_at is when the event behind the step happened; received_at when duly learnt of it
    received_at: datetime | None = None
    late_arriving: bool | None = None  # breached before duly learnt of the event
    stage: str | None = None  # the stage (org.yaml `stages:`) the visit put its record in


SlaEventKind = Literal[
    "start", "pause", "resume", "stop", "warning", "breach", "escalation", "retarget"
]


class SlaEvent(BaseModel):
    """One moment in an SLA clock's life, for the instance's audit trail."""

    clock: str  # "step:<step id>" or a process clock's name
    kind: SlaEventKind
    at: datetime
    step: str | None = None
    visit: int | None = None
    due_at: datetime | None = None
    detail: str = ""


class RecordSlaEventsInput(BaseModel):
    """SLA events to append; each is unique on (instance, sequence number)."""

    instance_id: str
    first_seq: int
    events: list[SlaEvent]


class StepWrites(BaseModel):
    """What an instance's steps left to write since its last activity, written in one go.

    Closing a task, recording its fact, a decision's fact and the SLA events between them
    happen in one workflow task; they ride on the next activity that has to run anyway (the
    next task's `open_task`, `finish_instance`) or go in `record_writes` before the instance
    waits, so a step costs one round trip to the store instead of four. The instance's own
    start rides on the first of them, and an outbound action (`run_action`) carries what came
    before it, written before anything is sent.
    """

    model_config = STRICT

    start: StartInstanceInput | None = None  # written first: the rest refer to the instance
    closes: list[CloseTaskInput] = Field(default_factory=list)
    steps: list[RecordStepInput] = Field(default_factory=list)
    sla_events: RecordSlaEventsInput | None = None


class EscalateInput(BaseModel):
    """Run one rung of a ladder: notify someone, or reassign the open task."""

    alert_key: str  # "<instance>/<clock>/<visit>/<rung>": one alert per rung, ever
    instance_id: str
    process: str
    step: str | None = None
    clock: str
    rung: int
    at_percent: float
    level: Literal["warning", "breach", "escalation"]
    notify: str | None = None  # assignee | manager | user:<id>
    reassign: str | None = None  # manager | user:<id> | round-robin:<team> | least-loaded:<team>
    task_id: str | None = None
    assignee: str | None = None
    team: str | None = None
    due_at: datetime | None = None
    fired_at: datetime
    title: str = ""
    by: str | None = None  # who asked for a reassignment (None: the ladder)
    # SLA events not yet written (the breach's own, this rung's): written in the alert's
    # transaction, each once per (instance, sequence number), as `record_sla_events` would
    sla_events: list[SlaEvent] = Field(default_factory=list)
    first_seq: int = 0


class EscalateResult(BaseModel):
    """The task's assignee after the rung (changed only by `reassign`)."""

    assignee: str | None = None
    notified: list[str] = Field(default_factory=list)


class FailureAlertInput(BaseModel):
    """An instance stopped because an action failed for good: tell the process's manager."""

    alert_key: str
    instance_id: str
    process: str
    step: str
    team: str | None = None
    message: str
    fired_at: datetime


class SettlePriorityInput(BaseModel):
    """An instance started in bulk has settled: from now on it is as urgent as any."""

    workflow_id: str


class RunActionInput(BaseModel):
    """Run a registered action with its `with:` already rendered on the instance data."""

    model_config = STRICT

    action: str
    instance_id: str
    step: str
    visit: int
    params: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, Any] = Field(default_factory=dict)
    idempotency_key: str  # "<instance>/<step>/<visit>": receivers dedupe on it
    writes: StepWrites | None = None  # the steps' writes before it, committed before it runs


class RunActionResult(BaseModel):
    """What the action adds to the instance data (`set` writes here)."""

    data: dict[str, Any] = Field(default_factory=dict)
    detail: str = ""


# the fields above that name StepWrites before it is defined
OpenTaskInput.model_rebuild()
FinishInstanceInput.model_rebuild()
