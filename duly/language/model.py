"""The process language as pydantic models: what admins write in definitions/.

Each model forbids unknown keys, so a typo is an error, never silently ignored. Durations and
percentages are parsed while validating, so a compiled definition carries them ready to use and
its JSON round-trips through the same models.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    PlainSerializer,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from duly.language.actions import SET
from duly.language.durations import Duration, parse_duration

ID_PATTERN = r"^[a-z0-9]+(-[a-z0-9]+)*$"
EVENT_PATTERN = r"^[a-z0-9_]+(\.[a-z0-9_-]+)+$"
NAME_PATTERN = r"^[a-z_][a-z0-9_]*$"
DEFAULT_MAX_VISITS = 10


def _duration(value: Any) -> Any:
    if isinstance(value, str):
        return parse_duration(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"a duration needs a unit: write '{value} minutes' or '{value} hours'")
    return value


def _percent(value: Any) -> Any:
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%\s*", value)
        if not match:
            raise ValueError(f"'{value}' is not a percentage; write e.g. 75%")
        return float(match.group(1)) / 100
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"write a percentage with its sign, e.g. {value}%")
    return value


DurationField = Annotated[
    Duration,
    BeforeValidator(_duration),
    WithJsonSchema(
        {
            "type": "string",
            "description": "45 minutes, 4 hours, 3 business hours, 2 business days or PT4H",
            "examples": ["2 business days", "4 business hours", "45 minutes"],
        }
    ),
]
Percent = Annotated[
    float,
    BeforeValidator(_percent),
    PlainSerializer(lambda share: f"{share * 100:g}%", return_type=str),
    Field(ge=0),
    WithJsonSchema({"type": "string", "pattern": r"^\d+(\.\d+)?%$", "examples": ["75%"]}),
]
StepId = Annotated[str, Field(pattern=ID_PATTERN, description="a step id")]
Template = Annotated[str, Field(description="text with Jinja2 {{ placeholders }}")]
Expression = Annotated[str, Field(description="a Jinja2 expression, e.g. quote.amount >= 50000")]


class Spec(BaseModel):
    """Base of every definition model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Targets(Spec):
    """Durations chosen by instance data: `{by: "{{ case.priority }}", urgent: 4 hours}`."""

    model_config = ConfigDict(extra="allow", frozen=True)

    by: Template = Field(description="template whose value picks one of the targets below")
    default: DurationField | None = Field(
        default=None, description="used when the value matches no target"
    )

    @model_validator(mode="after")
    def _targets_are_durations(self) -> Targets:
        extra = self.__pydantic_extra__ or {}
        for name, value in list(extra.items()):
            extra[name] = Duration.model_validate(_duration(value))
        if not extra:
            raise ValueError("give at least one target, e.g. urgent: 4 business hours")
        return self

    @property
    def targets(self) -> dict[str, Duration]:
        """Each value of `by` and its duration."""
        return dict(self.__pydantic_extra__ or {})


def _within_kind(value: Any) -> str:
    if isinstance(value, Targets) or (isinstance(value, dict) and "by" in value):
        return "targets"
    return "duration"


# A string is a duration, a mapping with `by:` chooses by data: one error, never both
Within = Annotated[
    Annotated[DurationField, Tag("duration")] | Annotated[Targets, Tag("targets")],
    Discriminator(_within_kind),
]


class RungAction(Spec):
    """One action of a rung: notify someone, reassign the task, set data or run an action."""

    notify: str | None = Field(
        default=None,
        description="assignee | manager | skip-level | user:<id> | team:<team> (its members) | "
        "manager-of:<team> | role:<rep|manager|admin>",
        examples=["manager", "skip-level", "team:inbound-sales"],
    )
    reassign: str | None = Field(
        default=None,
        description="manager | user:<id> | round-robin:<team> | least-loaded:<team>",
    )
    set: dict[str, Any] | None = Field(
        default=None, description="values written into the instance data (templates allowed)"
    )
    action: str | None = Field(
        default=None, description="a registered action (email, webhook, crm.note...)"
    )
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _one_thing(self) -> RungAction:
        given = [name for name in RUNG_ACTIONS if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "each entry of 'do' needs exactly one of 'notify', 'reassign', 'set' or "
                f"'action'{', found ' + ' and '.join(given) if given else ''}"
            )
        if self.with_ and self.action is None:
            raise ValueError("'with' belongs to an 'action' entry")
        return self

    @property
    def summary(self) -> str:
        """What it does, in a few words: `notify manager`, `set`, `action email`."""
        if self.notify is not None:
            return f"notify {self.notify}"
        if self.reassign is not None:
            return f"reassign {self.reassign}"
        return "set" if self.set is not None else f"action {self.action}"

    @property
    def call(self) -> tuple[str, dict[str, Any]] | None:
        """The registered action it runs, with that action's `with:`; None for notify, reassign.

        `set:` runs the `set` action with the values to write as its `with:`.
        """
        if self.set is not None:
            return SET, self.set
        if self.action is not None:
            return self.action, self.with_
        return None


RUNG_ACTIONS = ("notify", "reassign", "set", "action")


class Rung(Spec):
    """One rung of an escalation ladder: at a share of the SLA, run its actions in order.

    The short form does one thing (`notify:` or `reassign:`); `do:` lists several.
    """

    at: Percent = Field(description="share of the SLA elapsed, e.g. 75% (warning), 100% (breach)")
    notify: str | None = Field(
        default=None,
        description="assignee | manager | skip-level | user:<id> | team:<team> | "
        "manager-of:<team> | role:<role>",
        examples=["manager"],
    )
    reassign: str | None = Field(
        default=None,
        description="manager | user:<id> | round-robin:<team> | least-loaded:<team>",
    )
    do: list[RungAction] | None = Field(
        default=None,
        min_length=1,
        description="several actions, run in order: notify, reassign, set or action",
    )

    @model_validator(mode="after")
    def _one_action(self) -> Rung:
        given = [name for name in ("notify", "reassign", "do") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "a rung needs exactly one of 'notify', 'reassign' or 'do' (a list of actions); "
                "to notify and reassign at the same moment, write "
                "do: [{notify: manager}, {reassign: manager}]"
            )
        return self

    @property
    def actions(self) -> list[RungAction]:
        """The rung's actions in order (the short form as a list of one)."""
        if self.do is not None:
            return list(self.do)
        return [RungAction(notify=self.notify, reassign=self.reassign)]

    @property
    def summary(self) -> str:
        """What the rung does: `notify manager, reassign manager`."""
        return ", ".join(action.summary for action in self.actions)


class Sla(Spec):
    """A step's service level: the time allowed and the ladder that runs when it slips."""

    within: Within = Field(description="time allowed, or targets chosen by instance data")
    escalate: list[Rung] = Field(default_factory=list)


class Clock(Spec):
    """A process-level SLA clock that spans several steps and may pause."""

    starts: str = Field(default="start", description="`start`, a step id or an event type")
    stops: list[str] = Field(min_length=1, description="step ids or event types that stop it")
    pauses_in: list[StepId] = Field(default_factory=list)
    within: Within
    escalate: list[Rung] = Field(default_factory=list)

    @field_validator("stops", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class StepBase(Spec):
    """What every step kind shares."""

    title: Template | None = None
    description: str | None = None
    max_visits: int | None = Field(default=None, ge=1)
    stage: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="the stage (from org.yaml's `stages:`) a record is in once it gets here",
    )


FieldType = Literal["text", "number", "integer", "boolean", "date", "datetime", "choice"]


class FieldSpec(Spec):
    """A value the rep fills in when completing a task."""

    type: FieldType
    required: bool | list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        default=True,
        description="true (the default), false, or the outcomes that need it: "
        "[qualified, prospect]",
    )
    options: list[str] | None = Field(
        default=None, min_length=1, description="the choices of a `choice` field (a picklist)"
    )
    default: Any = Field(default=None, description="the value when the rep leaves it empty")
    help: str | None = Field(default=None, description="a hint shown beside the field")

    @model_validator(mode="after")
    def _options_for_choice(self) -> FieldSpec:
        if self.type == "choice" and not self.options:
            raise ValueError("a 'choice' field needs its 'options', e.g. options: [yes, no]")
        if self.type != "choice" and self.options is not None:
            raise ValueError(f"'options' belong to a 'choice' field, not a {self.type} field")
        return self

    def required_for(self, outcome: str) -> bool:
        """Whether completing with `outcome` needs this field."""
        return self.required if isinstance(self.required, bool) else outcome in self.required


def field_value_problem(name: str, spec: FieldSpec, value: Any) -> str | None:
    """Why a value does not fit a task field (its type, a choice's options), or None."""
    checks: dict[str, Any] = {
        "text": lambda v: isinstance(v, str),
        "choice": lambda v: isinstance(v, str) and v in (spec.options or []),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
        "date": lambda v: isinstance(v, str) and _parses(date.fromisoformat, v),
        "datetime": lambda v: isinstance(v, str) and _parses(datetime.fromisoformat, v),
    }
    if checks[spec.type](value):
        return None
    if spec.type == "choice":
        return f"field '{name}' must be one of {', '.join(spec.options or [])}, found {value!r}"
    return f"field '{name}' must be {spec.type}, found {value!r}"


def _parses(parse: Any, text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


def _field_spec(value: Any) -> Any:
    return {"type": value} if isinstance(value, str) else value


FieldSpecField = Annotated[
    FieldSpec,
    BeforeValidator(_field_spec),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "string",
                    "enum": ["text", "number", "integer", "boolean", "date", "datetime"],
                    "description": "the field's type; required for every outcome",
                },
                {
                    "type": "object",
                    "properties": {
                        "type": {
                            "type": "string",
                            "enum": [
                                "text",
                                "number",
                                "integer",
                                "boolean",
                                "date",
                                "datetime",
                                "choice",
                            ],
                        },
                        "required": {
                            "anyOf": [
                                {"type": "boolean"},
                                {"type": "array", "items": {"type": "string"}},
                            ],
                            "description": "true, false, or the outcomes that need it",
                        },
                        "options": {
                            "type": "array",
                            "items": {"type": "string"},
                            "minItems": 1,
                            "description": "the choices of a choice field",
                        },
                        "default": {"description": "the value when left empty"},
                        "help": {"type": "string", "description": "a hint shown beside it"},
                    },
                    "required": ["type"],
                    "additionalProperties": False,
                },
            ],
            "description": "a type (text, number...), or {type, required, options, default, help}",
        }
    ),
]


def _logged_work(value: Any) -> Any:
    return {"outcome": value} if isinstance(value, str) else value


class LoggedWork(Spec):
    """Work logged in the CRM that completes the open task: `crm.call.logged: reached`."""

    outcome: str = Field(pattern=ID_PATTERN, description="the outcome it completes the task with")
    by: Template = Field(
        default="{{ by }}", description="who did the work (a user id), from the event's data"
    )
    note: Template | None = Field(default=None, description="the task's note, from the event")


LoggedWorkField = Annotated[
    LoggedWork,
    BeforeValidator(_logged_work),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": ID_PATTERN, "description": "an outcome"},
                {
                    "type": "object",
                    "properties": {
                        "outcome": {"type": "string", "pattern": ID_PATTERN},
                        "by": {"type": "string", "description": "a user id template"},
                        "note": {"type": "string", "description": "a note template"},
                    },
                    "required": ["outcome"],
                    "additionalProperties": False,
                },
            ],
            "description": "the outcome, or {outcome, by, note} rendered on the event's data",
        }
    ),
]


class TaskStep(StepBase):
    """A human task for a rep: assigned, clocked, completed with an outcome."""

    kind: Literal["task"]
    title: Template
    assign: str = Field(
        default="owner",
        description="owner | user:<id> | round-robin:<team> | least-loaded:<team>",
    )
    sla: Sla | None = None
    fields: dict[Annotated[str, Field(pattern=NAME_PATTERN)], FieldSpecField] = Field(
        default_factory=dict, description="values the rep fills in when completing the task"
    )
    outcomes: dict[Annotated[str, Field(pattern=ID_PATTERN)], StepId] = Field(
        min_length=1, description="each outcome the rep may pick, and the step it leads to"
    )
    outcome_stages: dict[
        Annotated[str, Field(pattern=ID_PATTERN)], Annotated[str, Field(pattern=ID_PATTERN)]
    ] = Field(
        default_factory=dict,
        description="the stage (from org.yaml's `stages:`) an outcome puts the record in, "
        "e.g. {qualified: qualified}",
    )
    completed_by: dict[Annotated[str, Field(pattern=EVENT_PATTERN)], LoggedWorkField] = Field(
        default_factory=dict,
        description="events (work logged in the CRM) that complete the open task, and with "
        "which outcome: the clock stops when the work was done, closed by the rep in `by`",
    )

    @field_validator("completed_by")
    @classmethod
    def _completes_with_an_outcome(
        cls, value: dict[str, LoggedWork], info: ValidationInfo
    ) -> dict[str, LoggedWork]:
        outcomes = info.data.get("outcomes")
        if value and info.data.get("fields"):
            raise ValueError(
                "an event cannot complete a task that declares 'fields' (the rep fills them "
                "in); remove 'completed_by' or the fields"
            )
        for event, work in value.items():
            if outcomes is not None and work.outcome not in outcomes:
                raise ValueError(
                    f"'{event}' completes the task with '{work.outcome}', which is not one of "
                    f"its outcomes ({', '.join(outcomes)})"
                )
        return value


class ActionStep(StepBase):
    """An automated step: runs a registered action (email, webhook, set, crm.*)."""

    kind: Literal["action"]
    do: str = Field(
        description="a registered action: email, webhook, set, crm.update, crm.task or crm.note"
    )
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")
    next: StepId
    on_error: StepId | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WaitStep(StepBase):
    """Wait a duration (`for:`), or for an event (`until:`) with a `timeout:`."""

    kind: Literal["wait"]
    for_: DurationField | None = Field(default=None, alias="for")
    until: str | None = Field(default=None, pattern=EVENT_PATTERN, description="an event type")
    timeout: DurationField | None = None
    next: StepId
    on_timeout: StepId | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _for_or_until(self) -> WaitStep:
        if (self.for_ is None) == (self.until is None):
            raise ValueError("a wait needs exactly one of 'for' (a duration) or 'until' (an event)")
        if self.for_ is not None and (self.timeout or self.on_timeout):
            raise ValueError("'timeout' and 'on_timeout' belong to a wait 'until' an event")
        if self.until is not None and (self.timeout is None or self.on_timeout is None):
            raise ValueError("a wait 'until' an event needs 'timeout' and 'on_timeout'")
        return self


class Branch(Spec):
    """One branch of a decision."""

    when: Expression
    next: StepId


class DecisionStep(StepBase):
    """Choose the next step from instance data: the first branch whose `when` holds."""

    kind: Literal["decision"]
    branches: list[Branch] = Field(min_length=1)
    otherwise: StepId


class EndStep(StepBase):
    """The instance ends here with a result (defaults to the step id)."""

    kind: Literal["end"]
    result: str | None = None


Step = Annotated[
    TaskStep | ActionStep | WaitStep | DecisionStep | EndStep, Field(discriminator="kind")
]
STEP_KINDS = ("task", "action", "wait", "decision", "end")


class Goal(Spec):
    """The target reports compare against: attainment per week."""

    attainment: Percent = Field(le=1)
    period: Literal["week"] = Field(
        default="week", description="reports measure goals by ISO week (Monday to Sunday)"
    )

    @field_validator("period", mode="before")
    @classmethod
    def _weekly(cls, value: Any) -> Any:
        # Reports, the dashboard and the weekly summary all count by ISO week: a daily or
        # monthly goal would be accepted here and silently measured weekly
        if value != "week":
            raise ValueError(
                f"goal period {value!r} is not measured: duly's reports, dashboard and summary "
                "count attainment by ISO week; write 'period: week' (or leave it out)"
            )
        return value


class Trigger(Spec):
    """The inbound event (or events) that start an instance, its condition and business key."""

    event: str | None = Field(default=None, pattern=EVENT_PATTERN)
    events: list[Annotated[str, Field(pattern=EVENT_PATTERN)]] | None = Field(
        default=None, min_length=1, description="several event types, any of which starts one"
    )
    key: Template = Field(description="business key: at most one live instance per key")
    when: Expression | None = Field(
        default=None,
        description="start only when this holds on the event's data, e.g. lead.source == 'web'",
    )

    @model_validator(mode="after")
    def _event_or_events(self) -> Trigger:
        if (self.event is None) == (self.events is None):
            raise ValueError(
                "a trigger needs exactly one of 'event' (one type) or 'events' (a list)"
            )
        return self

    @property
    def types(self) -> list[str]:
        """Every event type that may start an instance."""
        return [self.event] if self.event is not None else list(self.events or [])


class ProcessSpec(Spec):
    """A process file: definitions/processes/<process>.yaml."""

    process: str = Field(pattern=ID_PATTERN, description="id: lowercase words joined by '-'")
    title: str
    description: str | None = None
    version: int = Field(ge=1)
    calendar: str
    team: str | None = None
    goal: Goal | None = None
    trigger: Trigger | None = None
    on: dict[Annotated[str, Field(pattern=EVENT_PATTERN)], StepId] = Field(default_factory=dict)
    max_visits: int = Field(default=DEFAULT_MAX_VISITS, ge=1)
    clocks: dict[Annotated[str, Field(pattern=ID_PATTERN)], Clock] = Field(default_factory=dict)
    start: StepId
    steps: dict[Annotated[str, Field(pattern=ID_PATTERN)], Step] = Field(min_length=1)


# --- calendars -------------------------------------------------------------------------------


class HolidaySpec(Spec):
    """Public holidays from the `holidays` package, plus extra closed dates and exceptions."""

    country: str | None = Field(default=None, description="ISO code, e.g. US, DE")
    subdivision: str | None = Field(default=None, description="e.g. NY, BY")
    extra: list[str] = Field(default_factory=list, description="more closed dates, YYYY-MM-DD")
    except_: list[str] = Field(
        default_factory=list, alias="except", description="holidays that are worked"
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class CalendarSpec(Spec):
    """A calendar file: definitions/calendars/<calendar>.yaml."""

    calendar: str = Field(pattern=ID_PATTERN)
    title: str | None = None
    timezone: str = Field(description="IANA time zone, e.g. America/New_York")
    hours: dict[str, str | list[str]] = Field(
        description='weekly open hours, e.g. {mon-fri: "09:00-12:00, 13:00-17:00"}'
    )
    holidays: HolidaySpec = Field(default_factory=HolidaySpec)
    special_hours: dict[str, str | list[str]] = Field(
        default_factory=dict,
        description='dates with their own hours: {"2026-12-24": "09:00-13:00"} or "closed"',
    )


# --- org ---------------------------------------------------------------------------------------


class WebhookChannel(Spec):
    """A generic JSON webhook, signed with HMAC-SHA256 using the secret in an env variable."""

    url: str
    secret_env: str | None = Field(default=None, pattern=r"^DULY_[A-Z0-9_]+$")


class Channels(Spec):
    """Where a person hears from duly, besides in-app."""

    email: str | None = None
    slack: str | None = Field(default=None, description="a Slack-compatible incoming webhook URL")
    webhook: WebhookChannel | None = None


def _id_text(value: Any) -> Any:
    # CRM ids are numbers in HubSpot and Pipedrive: `hubspot: 12345` unquoted means "12345"
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


CrmId = Annotated[str, BeforeValidator(_id_text), Field(min_length=1)]


class UserSpec(Spec):
    """One person."""

    name: str
    email: str | None = None
    role: Literal["rep", "manager", "admin"] = "rep"
    channels: Channels = Field(default_factory=Channels)
    timezone: str | None = Field(
        default=None,
        description="IANA time zone this person reads times in, e.g. Europe/Lisbon; "
        "unset: each process's calendar zone",
    )
    crm_ids: dict[str, CrmId] = Field(
        default_factory=dict,
        description="this person's owner id in each CRM, by CRM or source name "
        '(e.g. {hubspot: "12345"}): how a CRM record\'s owner becomes this user',
    )
    slack_id: str | None = Field(
        default=None,
        pattern=r"^[UW][A-Z0-9]{2,}$",
        description="this person's Slack member id (U0123ABCD): the Slack app (org `slack:`) "
        "sends them direct messages, and their clicks in Slack act as them",
    )


class SlackApp(Spec):
    """The org's Slack app: the NAMES of the variables holding its secrets, never the secrets."""

    bot_token: str = Field(
        pattern=r"^DULY_[A-Z0-9_]+$",
        description="the environment variable holding the app's bot token (xoxb-...)",
    )
    signing_secret: str = Field(
        pattern=r"^DULY_[A-Z0-9_]+$",
        description="the environment variable holding the app's signing secret",
    )


class TeamSpec(Spec):
    """A team: its manager and members."""

    name: str | None = None
    manager: str
    members: list[str] = Field(default_factory=list)


class OrgSpec(Spec):
    """definitions/org.yaml: users, teams and the stages records go through."""

    users: dict[Annotated[str, Field(pattern=ID_PATTERN)], UserSpec] = Field(default_factory=dict)
    teams: dict[Annotated[str, Field(pattern=ID_PATTERN)], TeamSpec] = Field(default_factory=dict)
    slack: SlackApp | None = Field(
        default=None, description="the Slack app that messages users with a `slack_id`"
    )
    stages: list[Annotated[str, Field(pattern=ID_PATTERN)]] = Field(
        default_factory=list,
        description="the stages a record goes through, in order, across processes "
        "(e.g. [suspect, prospect, qualified, quote, won]); steps and outcomes name them",
    )


# --- monitors ------------------------------------------------------------------------------------


class Schedule(Spec):
    """When a monitor checks: every interval or on a cron expression, optionally in open hours."""

    every: DurationField | None = None
    cron: str | None = None
    during: str | None = Field(default=None, description="only in this calendar's open hours")

    @model_validator(mode="after")
    def _every_or_cron(self) -> Schedule:
        if (self.every is None) == (self.cron is None):
            raise ValueError("a schedule needs exactly one of 'every' or 'cron'")
        if self.every is not None and self.every.kind != "wall":
            raise ValueError("'every' takes a wall-clock interval such as 15 minutes")
        if self.cron is not None and len(self.cron.split()) != 5:
            raise ValueError(f"'{self.cron}' is not a 5-field cron expression like '*/15 * * * *'")
        return self


class MonitorFilter(Spec):
    """Which tasks a monitor counts."""

    process: str | None = None
    team: str | None = None
    step: str | None = None


class Gauge(Spec):
    """A value reported by events (`measure: gauge`): the latest matching event's number."""

    event: str = Field(
        min_length=1, max_length=200, description="the event type that reports the value"
    )
    value: str = Field(
        min_length=1,
        max_length=200,
        description="where the number is in the event's data, e.g. backlog or queue.size",
    )
    where: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="only events whose data has these values (at dotted paths), e.g. "
        "{queue: support}",
    )


class Threshold(Spec):
    """Alert when the measure crosses `above` (or `below`), recover at `recover_at`."""

    above: float | None = None
    below: float | None = None
    recover_at: float | None = None

    @model_validator(mode="after")
    def _one_side(self) -> Threshold:
        if (self.above is None) == (self.below is None):
            raise ValueError("a threshold needs exactly one of 'above' or 'below'")
        if self.recover_at is not None:
            if self.above is not None and self.recover_at > self.above:
                raise ValueError("'recover_at' must not be above 'above'")
            if self.below is not None and self.recover_at < self.below:
                raise ValueError("'recover_at' must not be below 'below'")
        return self


class MonitorSpec(Spec):
    """A monitor file: definitions/monitors/<monitor>.yaml."""

    monitor: str = Field(pattern=ID_PATTERN)
    title: str
    schedule: Schedule
    measure: Literal["open_tasks", "overdue_tasks", "attainment", "gauge"]
    gauge: Gauge | None = Field(default=None, description="what `measure: gauge` reads")
    filter: MonitorFilter = Field(default_factory=MonitorFilter)
    threshold: Threshold
    notify: list[str] = Field(min_length=1, description="manager | user:<id> | team:<id>")
