"""A what-if scenario: which processes, how much work, which team, how reps behave.

Scenarios live in definitions/scenarios/ and are checked like every definition: one
`DefinitionError` with file, line and column for each problem, and a JSON Schema
(`duly schema scenario`).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, model_validator

from duly.language.durations import Duration
from duly.language.errors import DefinitionError, Problem
from duly.language.loader import Definitions, load_paths
from duly.language.model import ID_PATTERN, DurationField, Percent, Spec
from duly.language.source import Source, parse_yaml
from duly.language.validation import validate_model

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
BUSINESS_DAY = 8 * 3600.0
"""Business seconds a `business day` of a rep's habit stands for."""


def business_seconds(duration: Duration) -> float:
    """A habit's duration in business seconds (a business day counts 8 open hours)."""
    if duration.kind == "business_days":
        return duration.days * BUSINESS_DAY
    return float(duration.seconds)


class Period(Spec):
    """A past period of the live store, both dates included."""

    from_: date = Field(alias="from")
    to: date

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.to < self.from_:
            raise ValueError(f"'to' ({self.to}) is before 'from' ({self.from_})")
        return self


class ProcessRef(Spec):
    """A draft process file not yet published, relative to the scenario file."""

    file: str


class Arrivals(Spec):
    """How many instances start: a mean per business day with a shape, or as recorded."""

    per_day: float | None = Field(
        default=None, gt=0, le=10000, description="mean new instances per business day"
    )
    weekdays: dict[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"], float] = Field(
        default_factory=dict,
        description="relative weight of each weekday (default 1 for every open day)",
    )
    hours: dict[Annotated[int, Field(ge=0, le=23)], float] = Field(
        default_factory=dict,
        description="relative weight of each local hour of the day (default: flat over open hours)",
    )
    as_recorded: Period | None = Field(
        default=None,
        description="replay the instances the live store recorded in this period, same weekday "
        "and time of day, whole weeks later",
    )

    @model_validator(mode="after")
    def _one_kind(self) -> Arrivals:
        if (self.per_day is None) == (self.as_recorded is None):
            raise ValueError("give exactly one of 'per_day' or 'as_recorded'")
        return self


class Habit(Spec):
    """A rep's habit on a task step: time to act (log-normal or exponential), outcome mix."""

    p50: DurationField | None = Field(
        default=None, description="median business time from task opened to done (log-normal)"
    )
    p90: DurationField | None = Field(default=None, description="90th percentile of that time")
    mean: DurationField | None = Field(
        default=None, description="or: exponential time to act with this mean"
    )
    outcomes: dict[str, float] = Field(
        default_factory=dict, description="outcome -> relative weight (default: as fitted)"
    )

    @model_validator(mode="after")
    def _spread(self) -> Habit:
        if self.mean is not None:
            if self.p50 is not None or self.p90 is not None:
                raise ValueError("give either 'mean' (exponential) or 'p50' and 'p90'")
            return self
        if self.p50 is None or self.p90 is None:
            raise ValueError("give 'p50' and 'p90' (log-normal), or 'mean' (exponential)")
        if business_seconds(self.p90) < business_seconds(self.p50):
            raise ValueError(f"p90 ({self.p90}) is below p50 ({self.p50})")
        return self


class NewRep(Spec):
    """A rep added to a team for the scenario."""

    team: str
    like: str | None = Field(default=None, description="behave like this existing user (fitted)")
    habit: Habit | None = Field(default=None, description="or given habits, for every task step")

    @model_validator(mode="after")
    def _one_behaviour(self) -> NewRep:
        if (self.like is None) == (self.habit is None):
            raise ValueError("a new rep needs exactly one of 'like' or 'habit'")
        return self


class Leave(Spec):
    """Dates a rep is away: their tasks wait, the ladder reassigns them."""

    from_: date = Field(alias="from")
    to: date


class Team(Spec):
    """Changes to org.yaml's team for the scenario."""

    add: dict[Annotated[str, Field(pattern=ID_PATTERN)], NewRep] = Field(default_factory=dict)
    remove: list[str] = Field(default_factory=list)
    leave: dict[str, list[Leave]] = Field(default_factory=dict)
    hours: dict[str, Annotated[str, Field(pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")]] = Field(
        default_factory=dict,
        description="a rep's own working hours each open day, e.g. '10:00-15:00' (local)",
    )


class Behaviour(Spec):
    """How reps behave: fitted from the live store's facts, with given habits on top."""

    fit: Period | None = Field(
        default=None, description="the period whose facts the habits are fitted on (default all)"
    )
    reps: dict[str, Habit] = Field(default_factory=dict, description="given habits per rep")
    one_at_a_time: bool = Field(
        default=False,
        description="each rep works their tasks one after another, oldest first (a queue), "
        "instead of each task's time counting from its opening",
    )
    speed: Percent = Field(
        default=1.0,
        le=10,
        description="scales every rep's time to act (80% = a fifth faster)",
    )


class ScenarioSpec(Spec):
    """definitions/scenarios/<name>.yaml: a what-if run of processes with a team."""

    scenario: Annotated[str, Field(pattern=ID_PATTERN)]
    title: str | None = None
    processes: list[Annotated[str, Field(pattern=ID_PATTERN)] | ProcessRef] = Field(min_length=1)
    start: date | None = Field(
        default=None,
        description="first day measured (default: next Monday, then as many weeks later as "
        "the warm-up lasts); it and its warm-up are today or later",
    )
    weeks: int = Field(default=4, ge=1, le=26)
    warm_up: int = Field(
        default=0,
        ge=0,
        le=4,
        description="weeks simulated before `start` and not measured, so the first week "
        "measured begins with work already open, as a real week does (default: none)",
    )
    arrivals: dict[str, Arrivals]
    team: Team = Field(default_factory=Team)
    behaviour: Behaviour = Field(default_factory=Behaviour)
    assignment: Literal["as-defined", "round-robin", "least-loaded"] = Field(
        default="as-defined",
        description="override every task step's assign: with this rule over the process's team",
    )


class Scenario:
    """A checked scenario with the processes it runs and the definitions around them."""

    def __init__(self, spec: ScenarioSpec, definitions: Definitions, file: str) -> None:
        """Hold a checked scenario; use `load_scenario` to make one."""
        self.spec = spec
        self.definitions = definitions
        self.file = file


def load_scenario(path: Path, definitions: Definitions, root: Path) -> Scenario:
    """Read, check and resolve a scenario file against the loaded definitions.

    Args:
        path: The scenario YAML file.
        definitions: The live definitions (processes, org, calendars).
        root: The definitions folder (context for draft process files).

    Returns:
        The checked scenario, with its draft processes compiled in its own `definitions`.

    Raises:
        DefinitionError: Every problem found, located in the scenario (or draft) file.
    """
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError([Problem(shown, 1, 1, f"cannot read the file: {exc}")]) from None
    source = parse_yaml(text, shown)
    spec, problems = validate_model(ScenarioSpec, source, "a scenario")
    if spec is None:
        raise DefinitionError(problems)
    chosen = Definitions(
        processes={},
        calendars=definitions.calendars,
        org=definitions.org,
        files=list(definitions.files),
    )
    for index, ref in enumerate(spec.processes):
        where = ("processes", index)
        if isinstance(ref, str):
            if ref not in definitions.processes:
                known = ", ".join(sorted(definitions.processes)) or "none"
                problems.append(source.problem(where, f"no live process '{ref}' (known: {known})"))
                continue
            chosen.processes[ref] = definitions.processes[ref]
            continue
        draft = (path.parent / ref.file).resolve()
        if not draft.is_file():
            problems.append(source.problem((*where, "file"), f"no draft process file {draft}"))
            continue
        try:
            loaded = load_paths([draft], root=root)
        except DefinitionError as exc:
            problems.extend(exc.problems)
            continue
        if not loaded.processes:
            problems.append(source.problem((*where, "file"), f"{ref.file} defines no process"))
        chosen.processes.update(loaded.processes)
    problems.extend(_check_references(spec, source, chosen))
    if problems:
        raise DefinitionError(problems)
    return Scenario(spec, _with_team(spec, chosen), shown)


def _check_references(spec: ScenarioSpec, source: Source, chosen: Definitions) -> list[Problem]:
    problems: list[Problem] = []
    users, teams = chosen.org.users, chosen.org.teams
    for name in spec.arrivals:
        if chosen.processes and name not in chosen.processes:
            problems.append(
                source.problem(
                    ("arrivals", name),
                    f"arrivals for '{name}', which the scenario does not run "
                    f"(it runs {', '.join(sorted(chosen.processes))})",
                    key=True,
                )
            )
    for name in chosen.processes:
        if name not in spec.arrivals:
            problems.append(source.problem(("arrivals",), f"no arrivals given for '{name}'"))
    for rep, added in spec.team.add.items():
        if added.team not in teams:
            problems.append(source.problem(("team", "add", rep, "team"), f"no team '{added.team}'"))
        if added.like is not None and added.like not in users:
            problems.append(source.problem(("team", "add", rep, "like"), f"no user '{added.like}'"))
        if rep in users:
            problems.append(
                source.problem(("team", "add", rep), f"'{rep}' already exists", key=True)
            )
    known = set(users) | set(spec.team.add)
    for index, rep in enumerate(spec.team.remove):
        if rep not in users:
            problems.append(source.problem(("team", "remove", index), f"no user '{rep}'"))
    for section in ("leave", "hours"):
        for rep in getattr(spec.team, section):
            if rep not in known:
                problems.append(
                    source.problem(("team", section, rep), f"no user '{rep}'", key=True)
                )
    for rep in spec.behaviour.reps:
        if rep not in known:
            problems.append(
                source.problem(("behaviour", "reps", rep), f"no user '{rep}'", key=True)
            )
    first = spec.start - timedelta(weeks=spec.warm_up) if spec.start is not None else None
    if first is not None and first < date.today():
        warm = f" (its warm-up from {first})" if spec.warm_up else ""
        problems.append(
            source.problem(
                ("start",), f"start {spec.start}{warm} is in the past; simulate from today on"
            )
        )
    return problems


def _with_team(spec: ScenarioSpec, chosen: Definitions) -> Definitions:
    """The definitions with the scenario's team changes and assignment rule applied."""
    from duly.language.model import TaskStep, UserSpec

    org = chosen.org
    users = dict(org.users)
    teams = dict(org.teams)
    for rep, added in spec.team.add.items():
        users[rep] = UserSpec(name=rep, role="rep")
        team = teams[added.team]
        teams[added.team] = team.model_copy(update={"members": [*team.members, rep]})
    for rep in spec.team.remove:
        # Gone from the org: their CRM records' owner is unknown, so work falls back to the team
        users.pop(rep, None)
        for name, team in teams.items():
            if rep in team.members:
                members = [m for m in team.members if m != rep]
                teams[name] = team.model_copy(update={"members": members})
    processes = dict(chosen.processes)
    if spec.assignment != "as-defined":
        for name, process in processes.items():
            if process.spec.team is None:
                continue
            rule = f"{spec.assignment}:{process.spec.team}"
            steps = {
                sid: step.model_copy(update={"assign": rule})
                if isinstance(step, TaskStep) and not step.assign.startswith("user:")
                else step
                for sid, step in process.spec.steps.items()
            }
            processes[name] = process.model_copy(
                update={"spec": process.spec.model_copy(update={"steps": steps})}
            )
    return Definitions(
        processes=processes,
        calendars=chosen.calendars,
        org=org.model_copy(update={"users": users, "teams": teams}),
        files=chosen.files,
    )
