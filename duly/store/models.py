"""duly's tables, as sqlmodel models.

Tables the web app shows come in families: `...Base` (shared columns), the table itself, and
`...Public` (what the API returns). Rows are created only by activities, whose inputs
(activities/messages.py) play the part of the `...Create` models; table models never cross the
Temporal boundary.

Every timestamp is a `UtcDateTime`: stored in UTC, read back timezone-aware. Every row an
activity writes has a natural key with a unique constraint, so a retried activity finds the row
it already wrote (see `duly.store.crud.insert_if_absent`).
"""

from datetime import datetime
from typing import Any, Literal, get_args

from sqlalchemy import CheckConstraint, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from duly.store.types import JsonDocument, UtcDateTime, utc_now

INSTANCE_STATUSES = ("running", "completed", "failed")
TASK_STATUSES = ("open", "completed", "cancelled")
# `threshold` and `recovery`: a monitor crossed its line, or came back (duly.monitors)
AlertLevel = Literal["warning", "breach", "escalation", "failure", "threshold", "recovery"]
ALERT_LEVELS: tuple[str, ...] = get_args(AlertLevel)
ROLES = ("rep", "manager", "admin")
CHANNELS = ("email", "slack", "webhook")
DELIVERY_STATUSES = ("pending", "sent", "failed")
# `alert`: alerts, sent before `bulk` (assignments, summaries) whenever both wait (duly.notify)
DELIVERY_LANES = ("alert", "bulk")


def _one_of(column: str, values: tuple[str, ...], name: str) -> CheckConstraint:
    listed = ", ".join(f"'{value}'" for value in values)
    return CheckConstraint(f"{column} IN ({listed})", name=name)


# --- people ------------------------------------------------------------------------------------


class UserBase(SQLModel):
    """A person from org.yaml."""

    id: str = Field(primary_key=True, max_length=100)
    name: str
    email: str | None = None
    role: str = Field(default="rep", max_length=20)
    active: bool = Field(default=True, description="false once the user leaves org.yaml")
    timezone: str | None = Field(
        default=None, max_length=64, description="the zone they read times in (org.yaml)"
    )


class User(UserBase, table=True):
    """A person; never deleted, so tasks, alerts and facts keep naming them."""

    __tablename__ = "users"
    __table_args__ = (_one_of("role", ROLES, "ck_users_role"),)

    token_hash: str | None = Field(default=None, description="hash of the user's API token")


class UserPublic(UserBase):
    """A person as the API shows them (no token hash)."""


class UserChannel(SQLModel, table=True):
    """Where a person hears from duly besides in-app: one row per channel in org.yaml.

    A table of its own rather than a column on `users`, so databases made before channels
    existed get it from `create_all` without a migration. Rows follow org.yaml
    (`duly.store.crud.sync_org`); deliveries read them when they are sent, so a corrected URL
    applies to notifications still waiting.
    """

    __tablename__ = "user_channels"
    __table_args__ = (_one_of("channel", CHANNELS, "ck_user_channels_channel"),)

    user_id: str = Field(
        primary_key=True, foreign_key="users.id", ondelete="CASCADE", max_length=100
    )
    channel: str = Field(primary_key=True, max_length=20)
    target: str = Field(sa_type=Text, description="an email address or a webhook URL")
    secret_env: str | None = Field(
        default=None,
        max_length=100,
        description="the environment variable holding a webhook's signing secret",
    )


class Team(SQLModel, table=True):
    """A team from org.yaml: its manager handles `notify: manager` for its members' tasks."""

    __tablename__ = "teams"

    id: str = Field(primary_key=True, max_length=100)
    name: str
    manager: str = Field(foreign_key="users.id", max_length=100)
    active: bool = Field(default=True, description="false once the team leaves org.yaml")


class TeamMember(SQLModel, table=True):
    """A member of a team; `position` orders round-robin and least-loaded ties."""

    __tablename__ = "team_members"

    team_id: str = Field(
        primary_key=True, foreign_key="teams.id", ondelete="CASCADE", max_length=100
    )
    user_id: str = Field(primary_key=True, foreign_key="users.id", max_length=100)
    position: int = Field(ge=0)


class Rotation(SQLModel, table=True):
    """A team's round-robin position, durable so fairness survives restarts and workers."""

    __tablename__ = "rotations"

    team_id: str = Field(
        primary_key=True, foreign_key="teams.id", ondelete="CASCADE", max_length=100
    )
    next_index: int = Field(default=0, ge=0)


# --- definitions and instances -----------------------------------------------------------------


class Definition(SQLModel, table=True):
    """A compiled process as an instance ran it: (process, version) never changes content."""

    __tablename__ = "definitions"
    __table_args__ = (UniqueConstraint("process", "version", name="uq_definitions_version"),)

    id: int | None = Field(default=None, primary_key=True)
    process: str = Field(max_length=100)
    version: int = Field(ge=1)
    hash: str = Field(max_length=64, description="sha256 of what the definition runs on")
    source: str = Field(default="", sa_type=Text, description="the YAML as written")
    compiled_json: str = Field(default="", sa_type=Text, description="CompiledProcess as JSON")
    created_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime)


class InstanceBase(SQLModel):
    """One run of a process for one business key."""

    id: str = Field(
        primary_key=True, description='"<process>/<business key>/<run>": one per instance, ever'
    )
    workflow_id: str = Field(
        default="", index=True, description='"<process>/<business key>": where to send events'
    )
    process: str = Field(index=True, max_length=100)
    version: int = Field(ge=1)
    hash: str = Field(max_length=64)
    business_key: str
    status: str = Field(default="running", max_length=20)
    result: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JsonDocument)
    started_at: datetime = Field(sa_type=UtcDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class Instance(InstanceBase, table=True):
    """An instance row, written when it starts and again when it ends."""

    __tablename__ = "instances"
    __table_args__ = (
        Index("ix_instances_status", "status"),  # the running ones: a few among all ever
        _one_of("status", INSTANCE_STATUSES, "ck_instances_status"),
    )


class InstancePublic(InstanceBase):
    """An instance as the API shows it."""


# --- tasks -------------------------------------------------------------------------------------


class TaskBase(SQLModel):
    """A human task: one visit of a `task` step."""

    id: str = Field(primary_key=True, description='"<instance>/<step>/<visit>"')
    instance_id: str = Field(foreign_key="instances.id", ondelete="CASCADE")
    process: str = Field(max_length=100)
    step: str = Field(max_length=100)
    visit: int = Field(ge=1)
    title: str
    assignee: str | None = Field(default=None, max_length=100)
    team: str | None = Field(default=None, max_length=100)
    status: str = Field(default="open", max_length=20)
    outcome: str | None = None
    note: str | None = Field(default=None, sa_type=Text)
    closed_by: str | None = None
    fields: dict[str, str] = Field(default_factory=dict, sa_type=JsonDocument)
    outcomes: list[str] = Field(default_factory=list, sa_type=JsonDocument)
    opened_at: datetime = Field(sa_type=UtcDateTime)
    due_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class Task(TaskBase, table=True):
    """A task row: a rep's inbox is `WHERE assignee = ? AND status = 'open'`."""

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("instance_id", "step", "visit", name="uq_tasks_visit"),
        Index("ix_tasks_assignee_status", "assignee", "status"),
        Index("ix_tasks_status", "status"),  # the open ones (a backlog monitor counts them)
        _one_of("status", TASK_STATUSES, "ck_tasks_status"),
    )


class TaskPublic(TaskBase):
    """A task as the API shows it."""


# --- facts and audit ---------------------------------------------------------------------------


class StepFact(SQLModel, table=True):
    """The step-outcome fact table: one row per step visit, what reports measure."""

    __tablename__ = "step_facts"
    __table_args__ = (
        UniqueConstraint("instance_id", "step", "visit", name="uq_step_facts_visit"),
        Index("ix_step_facts_process_step_opened", "process", "step", "opened_at"),
        Index("ix_step_facts_assignee_opened", "assignee", "opened_at"),
        Index("ix_step_facts_team_opened", "team", "opened_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    instance_id: str = Field(foreign_key="instances.id", ondelete="CASCADE")
    process: str = Field(max_length=100)
    version: int = Field(ge=1)
    step: str = Field(max_length=100)
    kind: str = Field(max_length=20)
    visit: int = Field(ge=1)
    assignee: str | None = Field(default=None, max_length=100)
    team: str | None = Field(default=None, max_length=100)
    opened_at: datetime = Field(sa_type=UtcDateTime)
    due_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    closed_at: datetime = Field(sa_type=UtcDateTime)
    outcome: str | None = None
    sla_met: bool | None = None
    breached_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    highest_rung: int | None = None
    business_seconds: float | None = None
    final_assignee: str | None = Field(
        default=None,
        max_length=100,
        description="who held the task when it closed, when a reassignment after its breach "
        "moved it from `assignee` (who the visit counts for)",
    )
    # opened_at is when the event behind the step happened at the source (reports count by
    # it); received_at is when duly learnt of it, later when the event was delivered late
    received_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    late_arriving: bool | None = Field(
        default=None, description="the SLA was already breached when duly learnt of the event"
    )
    stage: str | None = Field(
        default=None,
        max_length=100,
        description="the stage (org.yaml `stages:`) this visit put its record in, if any",
    )


class StepFactWeek(SQLModel, table=True):
    """The fact table rolled up by week: what reports read instead of a million facts.

    One row per (process, version, step, kind, team, assignee, week, outcome, SLA met, highest
    rung), its counts added to in the transaction that inserts the fact (`record_step`, only
    when the fact is new, so a retry adds nothing). `week_start` is Monday 00:00 in the
    process calendar's time zone, as a UTC instant. `key` joins the dimensions (NULLs
    included, which a unique constraint over the columns would not compare).
    """

    __tablename__ = "step_fact_weeks"
    __table_args__ = (
        UniqueConstraint("key", name="uq_step_fact_weeks_key"),
        Index("ix_step_fact_weeks_process_week", "process", "week_start"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(sa_type=Text, description="the dimensions, joined")
    process: str = Field(max_length=100)
    version: int = Field(ge=1)
    step: str = Field(max_length=100)
    kind: str = Field(max_length=20)
    team: str | None = Field(default=None, max_length=100)
    assignee: str | None = Field(default=None, max_length=100)
    week_start: datetime = Field(sa_type=UtcDateTime)
    outcome: str | None = None
    sla_met: bool | None = None
    highest_rung: int | None = None
    visits: int = Field(default=0, ge=0)
    first_visits: int = Field(default=0, ge=0, description="visits numbered 1: instances")
    seconds_count: int = Field(default=0, ge=0, description="visits with business seconds")
    seconds_sum: float = Field(default=0.0, description="their business seconds, summed")


class StepFactWeekDuration(SQLModel, table=True):
    """How long tasks took, rolled up by week: a histogram of business seconds.

    One row per (process, version, step, team, assignee, week, bucket) of the task visits with
    business seconds, kept like `StepFactWeek` (same transaction as the fact, once). Buckets
    are minutes up to 2 hours, quarter hours up to 2 days, hours beyond
    (`duly.store.rollup.bucket_number`); percentiles find their bucket here and read
    only that bucket's facts.
    """

    __tablename__ = "step_fact_week_durations"
    __table_args__ = (
        UniqueConstraint("key", name="uq_step_fact_week_durations_key"),
        Index("ix_step_fact_week_durations_process_week", "process", "week_start"),
    )

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(sa_type=Text, description="the dimensions, joined")
    process: str = Field(max_length=100)
    version: int = Field(ge=1)
    step: str = Field(max_length=100)
    team: str | None = Field(default=None, max_length=100)
    assignee: str | None = Field(default=None, max_length=100)
    week_start: datetime = Field(sa_type=UtcDateTime)
    bucket: int = Field(ge=0)
    visits: int = Field(default=0, ge=0)
    seconds_sum: float = Field(default=0.0)


class SlaEventRow(SQLModel, table=True):
    """One moment of an SLA clock (start, pause, breach...), the instance's audit trail."""

    __tablename__ = "sla_events"
    __table_args__ = (UniqueConstraint("instance_id", "seq", name="uq_sla_events_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    instance_id: str = Field(foreign_key="instances.id", ondelete="CASCADE")
    seq: int = Field(ge=0, description="position in the instance's SLA event stream")
    clock: str
    kind: str = Field(max_length=20)
    at: datetime = Field(sa_type=UtcDateTime)
    step: str | None = None
    visit: int | None = None
    due_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    detail: str = Field(default="", sa_type=Text)


class AlertBase(SQLModel):
    """Something a person must hear about: a warning, breach, escalation or failure.

    One row per recipient: `key` is the key of the rung (or failure) that raised it followed by
    `:<recipient>`, so a rung that notifies a manager writes exactly one row for that manager,
    however often the activity is retried. `event_key` is the rung's key alone.
    """

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, description='"<rung or failure key>:<recipient>"')
    event_key: str = Field(index=True, description="the rung's (or failure's) key")
    instance_id: str | None = Field(
        default=None, foreign_key="instances.id", ondelete="SET NULL", index=True
    )
    process: str | None = Field(default=None, max_length=100)
    step: str | None = None
    clock: str | None = None
    level: str = Field(max_length=20)
    recipient: str = Field(max_length=100)
    message: str = Field(sa_type=Text)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime)
    acknowledged_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    acknowledged_by: str | None = None
    task_id: str | None = Field(
        default=None, max_length=400, description="the task it is about, if any"
    )
    resolved_at: datetime | None = Field(
        default=None,
        sa_type=UtcDateTime,
        description="when its task completed, was cancelled or was reassigned",
    )
    resolved_by: str | None = Field(
        default=None, max_length=100, description="who completed or reassigned the task"
    )
    resolution: str | None = Field(
        default=None, sa_type=Text, description='e.g. "completed 3 h 10 min late by chloe"'
    )
    late_seconds: float | None = Field(
        default=None, description="how late the task was when it was resolved (wall time)"
    )


class Alert(AlertBase, table=True):
    """An alert row: one still needing action has neither `acknowledged_at` nor `resolved_at`.

    An alert about a task is resolved when the task completes, is cancelled or is reassigned
    (`activities.process`): its task no longer needs this recipient to act.
    """

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_recipient_created", "recipient", "created_at"),
        Index("ix_alerts_task_resolved", "task_id", "resolved_at"),
        _one_of("level", ALERT_LEVELS, "ck_alerts_level"),
    )


class AlertPublic(AlertBase):
    """An alert as the API shows it."""


class InboundEvent(SQLModel, table=True):
    """An event received from outside (a CRM webhook), kept once by its id."""

    __tablename__ = "inbound_events"

    id: str = Field(primary_key=True, description="the sender's event id: duplicates are dropped")
    type: str = Field(index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JsonDocument)
    received_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime)
    instance_id: str | None = Field(default=None, index=True)


# --- notifications -----------------------------------------------------------------------------


class DeliveryBase(SQLModel):
    """One notification on one external channel: the transactional outbox of `duly.notify`.

    Written in the same transaction as the alert or task assignment it tells about, keyed
    `<notification key>:<channel>`, so a retried activity writes it once. The deliverer sends
    pending rows whose `next_attempt_at` has come, those in the `alert` lane first, and marks
    them `sent`, or schedules a retry, or, after its last attempt, `failed` (kept, with the
    error, for people to see).
    """

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, description='"<notification key>:<channel>", the dedupe key')
    user_id: str = Field(foreign_key="users.id", max_length=100, index=True)
    channel: str = Field(max_length=20)
    kind: str = Field(max_length=50, description="task.assigned, alert.breach, ...")
    subject: str = Field(sa_type=Text)
    body: str = Field(sa_type=Text, description="plain text")
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JsonDocument)
    status: str = Field(default="pending", max_length=20)
    lane: str = Field(
        default="bulk",
        max_length=10,
        sa_column_kwargs={"server_default": "bulk"},
        description="alert or bulk: alerts are claimed before bulk, and have a sender of their own",
    )
    attempts: int = Field(default=0, ge=0, description="sends started, the current one included")
    next_attempt_at: datetime = Field(
        default_factory=utc_now,
        sa_type=UtcDateTime,
        description="when a pending row is due; while one is being sent, when its lease ends",
    )
    last_error: str | None = Field(default=None, sa_type=Text)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class Delivery(DeliveryBase, table=True):
    """A delivery row; the deliverer takes pending rows whose `next_attempt_at` has come."""

    __tablename__ = "deliveries"
    __table_args__ = (
        Index("ix_deliveries_due", "status", "lane", "next_attempt_at"),
        _one_of("status", DELIVERY_STATUSES, "ck_deliveries_status"),
        _one_of("lane", DELIVERY_LANES, "ck_deliveries_lane"),
        _one_of("channel", CHANNELS, "ck_deliveries_channel"),
    )


class DeliveryPublic(DeliveryBase):
    """A delivery as the API shows it."""


# --- monitors ----------------------------------------------------------------------------------

MONITOR_STATES = ("ok", "alerting")


class MonitorState(SQLModel, table=True):
    """Where a monitor stands: ok or alerting, and what it last measured.

    One row per monitor, updated by the check that records each firing (activities/monitors.py),
    under a row lock, so two checks never both see "ok" and both alert.
    """

    __tablename__ = "monitor_states"
    __table_args__ = (_one_of("state", MONITOR_STATES, "ck_monitor_states_state"),)

    monitor: str = Field(primary_key=True, max_length=100)
    state: str = Field(default="ok", max_length=20)
    last_value: float | None = None
    last_slot: str | None = Field(default=None, max_length=40)
    last_checked_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    changed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class MonitorCheck(SQLModel, table=True):
    """One check of a monitor: the value measured for one time slot, kept to show later.

    Keyed by (monitor, slot): a retried or repeated check of a slot finds its row and changes
    nothing. `transition` is `crossed` or `recovered` when this check raised an alert.
    """

    __tablename__ = "monitor_checks"
    __table_args__ = (
        UniqueConstraint("monitor", "slot", name="uq_monitor_checks_slot"),
        Index("ix_monitor_checks_monitor_checked", "monitor", "checked_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    monitor: str = Field(max_length=100)
    slot: str = Field(max_length=40, description='the firing\'s time slot, "2026-11-30T09:15Z"')
    value: float | None = Field(default=None, description="None when there was nothing to measure")
    state: str = Field(max_length=20, description="the monitor's state after this check")
    transition: str | None = Field(default=None, max_length=20)
    checked_at: datetime = Field(sa_type=UtcDateTime)


# --- web sessions ------------------------------------------------------------------------------


class WebSession(SQLModel, table=True):
    """A signed-in browser: the web pages' server-side session (duly.api.web.session).

    The cookie carries a random id; only its SHA-256 is kept here, so a copy of the database
    signs nobody in. A session ends when it expires, when its user signs out (its row is
    deleted) and when the user's API token is reissued (all their rows are deleted).
    """

    __tablename__ = "web_sessions"

    id_hash: str = Field(primary_key=True, max_length=64, description="sha256 of the session id")
    user_id: str = Field(foreign_key="users.id", ondelete="CASCADE", max_length=100, index=True)
    created_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime)
    expires_at: datetime = Field(sa_type=UtcDateTime)


# --- Slack app and calendar feeds --------------------------------------------------------------


class SlackMessage(SQLModel, table=True):
    """A message the Slack app posted, kept so duly can update it (`chat.update`) later.

    Keyed by the delivery it sent, so a retried send records it once. `last_line` is what the
    last update added (a breach, say, with the buttons kept); `closed_at` is set once the
    message has been updated to say the task or alert moved on (its buttons removed).
    """

    __tablename__ = "slack_messages"

    delivery_key: str = Field(primary_key=True, max_length=300)
    user_id: str = Field(max_length=100, index=True)
    task_id: str | None = Field(default=None, max_length=300, index=True)
    alert_id: int | None = Field(default=None, index=True)
    channel: str = Field(max_length=50, description="the Slack conversation id (D0123...)")
    ts: str = Field(max_length=50, description="the message's Slack timestamp, its id")
    posted_at: datetime = Field(sa_type=UtcDateTime)
    last_line: str | None = Field(
        default=None, max_length=300, description="what the last update said it came to"
    )
    closed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)


class CalendarFeed(SQLModel, table=True):
    """A user's calendar feed: the generation its secret URL is derived from (`duly.calendar`).

    Rotating the URL moves to the next generation, and every older URL stops working. The
    secret itself is never stored: it is an HMAC of the generation under duly's link key.
    """

    __tablename__ = "calendar_feeds"

    user_id: str = Field(
        primary_key=True, foreign_key="users.id", ondelete="CASCADE", max_length=100
    )
    generation: int = Field(default=1)
    rotated_at: datetime = Field(sa_type=UtcDateTime)


# --- the published set and unheard events ------------------------------------------------------


class PublishedSet(SQLModel, table=True):
    """One published set of definitions: every file of the folder, as published, all at once.

    The highest revision is what every entry point (API, CLI, sources, monitors) starts from;
    older revisions stay for the record.
    """

    __tablename__ = "published_sets"

    revision: int | None = Field(default=None, primary_key=True)
    content_hash: str = Field(max_length=64, description="sha256 of the files, path by path")
    files: dict[str, str] = Field(
        default_factory=dict, sa_type=JsonDocument, description="relative path -> text"
    )
    published_by: str = Field(default="", max_length=100)
    published_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime)


class UnheardEvent(SQLModel, table=True):
    """An event no published process listened to: kept, its id not consumed, to replay later."""

    __tablename__ = "unheard_events"

    id: str = Field(primary_key=True, description="the event's id")
    type: str = Field(index=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=JsonDocument)
    occurred_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    received_at: datetime = Field(default_factory=utc_now, sa_type=UtcDateTime)
    times: int = Field(default=1, ge=1, description="how often it was sent unheard")
    replayed_at: datetime | None = Field(default=None, sa_type=UtcDateTime)
    replay_status: str | None = Field(default=None, max_length=20)
    instances: list[str] = Field(default_factory=list, sa_type=JsonDocument)
