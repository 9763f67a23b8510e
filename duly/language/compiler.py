"""Check a process against everything it names, and compile it into a self-contained definition."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from duly.language import business_time
from duly.language.actions import ACTIONS
from duly.language.business_time import BusinessCalendar
from duly.language.errors import Problem, YamlPath
from duly.language.expressions import (
    expression_problem,
    template_problem,
    url_template_problem,
)
from duly.language.graph import closure, transitions
from duly.language.model import (
    ActionStep,
    Clock,
    DecisionStep,
    EndStep,
    OrgSpec,
    ProcessSpec,
    Rung,
    RungAction,
    Sla,
    Step,
    Targets,
    TaskStep,
    field_value_problem,
)
from duly.language.source import Source
from duly.language.validation import describe, did_you_mean, validate_model


class EmailTemplate(BaseModel):
    """An email template from definitions/templates/<name>.txt: a Subject line, then the body."""

    model_config = ConfigDict(frozen=True)

    subject: str
    body: str


class CompiledProcess(BaseModel):
    """Everything a workflow needs to run a process, pinned by name, version and content hash."""

    model_config = ConfigDict(frozen=True)

    name: str
    version: int
    hash: str
    spec: ProcessSpec
    calendar: BusinessCalendar
    templates: dict[str, EmailTemplate] = {}
    file: str = ""
    source: str = ""

    def step(self, step_id: str) -> Step:
        """One step of the process."""
        return self.spec.steps[step_id]

    def standing_in(self, *, days_of: date, on: date, days: int) -> CompiledProcess:
        """The process with its calendar open on the days from `on` as on those from `days_of`.

        For runs on other dates than the ones they stand for (`business_time.standing_in`).
        """
        calendar = business_time.standing_in(self.calendar, days_of=days_of, on=on, days=days)
        return self.model_copy(update={"calendar": calendar})


@dataclass
class Context:
    """What a process may name: calendars, people and teams, email templates."""

    calendars: dict[str, BusinessCalendar] = field(default_factory=dict)
    calendar_data: dict[str, Any] = field(default_factory=dict)
    org: OrgSpec | None = None
    templates: dict[str, EmailTemplate] = field(default_factory=dict)


def compile_process(
    spec: ProcessSpec, source: Source, text: str, context: Context
) -> CompiledProcess:
    """Pin a checked process with its calendar and templates; the hash covers what it runs on."""
    templates = {
        name: context.templates[name]
        for with_ in _action_withs(spec)
        if isinstance(name := with_.get("template"), str)
        if name in context.templates
    }
    content = {
        "process": source.data,
        "calendar": context.calendar_data.get(spec.calendar),
        "templates": {name: t.model_dump() for name, t in sorted(templates.items())},
    }
    digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
    return CompiledProcess(
        name=spec.process,
        version=spec.version,
        hash=digest,
        spec=spec,
        calendar=context.calendars[spec.calendar],
        templates=templates,
        file=source.file,
        source=text,
    )


def _action_withs(spec: ProcessSpec) -> list[dict[str, Any]]:
    """The `with:` of every action: action steps', then ladder rungs' `action:` entries."""
    withs = [step.with_ for step in spec.steps.values() if isinstance(step, ActionStep)]
    ladders = [clock.escalate for clock in spec.clocks.values()] + [
        step.sla.escalate
        for step in spec.steps.values()
        if isinstance(step, TaskStep) and step.sla is not None
    ]
    for ladder in ladders:
        withs += [a.with_ for rung in ladder for a in rung.actions if a.action is not None]
    return withs


def check_process(
    spec: ProcessSpec,
    source: Source,
    context: Context,
    *,
    loose_edges: dict[str, set[str]] | None = None,
    entries_known: bool = True,
) -> list[Problem]:
    """Every problem with what a valid-shaped process refers to; empty when it can run.

    Args:
        spec: The process.
        source: Where it was read from, to locate problems.
        context: The calendars, people and templates it may name.
        loose_edges: For steps set aside as malformed: the step ids each may lead to, so a
            step behind a broken one is not called unreachable.
        entries_known: False when `start` or `on:` was set aside: reachability is then unknown.
    """
    checker = _Checker(spec, source, context, loose_edges or {}, entries_known)
    checker.run()
    return checker.problems


ASSIGN_FORMS = "owner, user:<id>, round-robin:<team> or least-loaded:<team>"
NOTIFY_FORMS = (
    "assignee, manager, skip-level, user:<id>, team:<team> (its members), manager-of:<team> "
    "or role:<rep|manager|admin>"
)
NOTIFY_KINDS = ("assignee", "manager", "skip-level", "user:", "team:", "manager-of:", "role:")
ROLES = ("rep", "manager", "admin")
REASSIGN_FORMS = "manager, user:<id>, round-robin:<team> or least-loaded:<team>"


class _Checker:
    def __init__(
        self,
        spec: ProcessSpec,
        source: Source,
        context: Context,
        loose_edges: dict[str, set[str]],
        entries_known: bool,
    ) -> None:
        self.spec = spec
        self.source = source
        self.context = context
        self.loose_edges = loose_edges
        self.entries_known = entries_known
        self.problems: list[Problem] = []

    def problem(self, path: YamlPath, message: str, *, key: bool = False) -> None:
        self.problems.append(self.source.problem(path, message, key=key))

    def run(self) -> None:
        self.check_references()
        self.check_graph()
        self.check_people_and_calendar()
        for step_id, step in self.spec.steps.items():
            self.check_step(step_id, step)
        for name, clock in self.spec.clocks.items():
            self.check_clock(name, clock)
        if self.spec.trigger:
            self.check_template(("trigger", "key"), self.spec.trigger.key)
            if self.spec.trigger.when is not None:
                problem = expression_problem(self.spec.trigger.when)
                if problem:
                    self.problem(("trigger", "when"), problem)

    # --- the flowchart --------------------------------------------------------------------

    def step_ref(self, path: YamlPath, target: str, what: str = "step") -> bool:
        if target in self.spec.steps:
            return True
        hint = did_you_mean(target, list(self.spec.steps))
        self.problem(path, f"{what} '{target}' is not defined in steps{hint}")
        return False

    def check_references(self) -> None:
        self.step_ref(("start",), self.spec.start, "start step")
        for event, target in self.spec.on.items():
            self.step_ref(("on", event), target)
        for step_id, step in self.spec.steps.items():
            for edge in transitions(step):
                self.step_ref(("steps", step_id, *edge.path), edge.target)

    def check_graph(self) -> None:
        steps = self.spec.steps
        if not any(isinstance(step, EndStep) for step in steps.values()):
            self.problem(
                ("steps",), "the process has no step of kind 'end', so it can never finish"
            )
            return
        if self.spec.start not in steps:
            return
        forward: dict[str, set[str]] = {sid: set() for sid in steps}
        backward: dict[str, set[str]] = {sid: set() for sid in steps}
        # A step that names an undefined step may lead anywhere once that step is written:
        # report the undefined name alone, not the unreachable or stuck steps it implies.
        open_ended: set[str] = set()
        for sid, step in steps.items():
            # each step costs its own edges only (never a copy of every step id): linear
            targets = {edge.target for edge in transitions(step)}
            if any(target not in steps for target in targets):
                open_ended.add(sid)
            for target in targets | self.loose_edges.get(sid, set()):
                if target not in steps:
                    continue
                forward[sid].add(target)
                backward[target].add(sid)
        live = closure([self.spec.start, *self.spec.on.values()], forward)
        ends = [sid for sid, step in steps.items() if isinstance(step, EndStep)]
        finishing = closure([*ends, *open_ended], backward)
        reach_known = self.entries_known and not open_ended
        for step_id in steps:
            if step_id not in live:
                if reach_known:
                    self.problem(
                        ("steps", step_id),
                        f"step '{step_id}' is unreachable: no path leads to it from start "
                        f"'{self.spec.start}' or from an 'on:' event",
                        key=True,
                    )
            elif step_id not in finishing:
                self.problem(
                    ("steps", step_id),
                    f"step '{step_id}' has no path to an end step: an instance there could "
                    "never finish",
                    key=True,
                )

    # --- calendar, people -------------------------------------------------------------------

    def check_people_and_calendar(self) -> None:
        if self.spec.calendar not in self.context.calendars:
            known = ", ".join(sorted(self.context.calendars)) or "none"
            hint = did_you_mean(self.spec.calendar, list(self.context.calendars))
            self.problem(
                ("calendar",),
                f"unknown calendar '{self.spec.calendar}' (known: {known}){hint}",
            )
        if self.spec.team is not None:
            self.team_ref(("team",), self.spec.team)

    def team_ref(self, path: YamlPath, team: str) -> None:
        org = self.context.org
        if org is not None and team not in org.teams:
            hint = did_you_mean(team, list(org.teams))
            self.problem(path, f"unknown team '{team}' (not in org.yaml){hint}")

    def user_ref(self, path: YamlPath, user: str) -> None:
        org = self.context.org
        if org is not None and user not in org.users:
            hint = did_you_mean(user, list(org.users))
            self.problem(path, f"unknown user '{user}' (not in org.yaml){hint}")

    def check_target(self, path: YamlPath, text: str, allowed: tuple[str, ...], forms: str) -> None:
        kind, _, name = text.partition(":")
        if not name and kind in allowed:
            if kind == "owner" and self.spec.team is None:
                self.problem(
                    path,
                    "'assign: owner' falls back to round-robin over the process's team when the "
                    "owner is missing; give the process a 'team:'",
                )
            return
        if name and f"{kind}:" in allowed:
            if kind == "user":
                self.user_ref(path, name)
            elif kind == "role":
                if name not in ROLES:
                    hint = did_you_mean(name, list(ROLES))
                    self.problem(path, f"unknown role '{name}'; expected {', '.join(ROLES)}{hint}")
            else:
                self.team_ref(path, name)
            return
        # 'rount-robin:sales' -> did you mean 'round-robin:sales'? Only a misspelt kind is
        # suggested: 'team:sales' where teams are not accepted is not a misspelt 'user:sales'
        kinds = [a.rstrip(":") for a in allowed if (":" in a) == bool(name)]
        close = did_you_mean(kind, kinds)
        hint = ""
        if close:
            near = close.split("'")[1]
            hint = f"; did you mean '{near}:{name}'?" if name else close
        self.problem(path, f"'{text}' is not understood here; expected {forms}{hint}")

    # --- steps ------------------------------------------------------------------------------

    def check_step(self, step_id: str, step: Step) -> None:
        at: YamlPath = ("steps", step_id)
        if step.title is not None:
            self.check_template((*at, "title"), step.title)
        if isinstance(step, TaskStep):
            self.check_target(
                (*at, "assign"),
                step.assign,
                ("owner", "user:", "round-robin:", "least-loaded:"),
                ASSIGN_FORMS,
            )
            if step.sla is not None:
                self.check_sla((*at, "sla"), step.sla)
            self.check_fields(at, step)
            for outcome, stage in step.outcome_stages.items():
                if outcome not in step.outcomes:
                    hint = did_you_mean(outcome, list(step.outcomes))
                    self.problem(
                        (*at, "outcome_stages", outcome),
                        f"'{outcome}' is not an outcome of this task "
                        f"({', '.join(step.outcomes)}){hint}",
                        key=True,
                    )
                self.stage_ref((*at, "outcome_stages", outcome), stage)
        if step.stage is not None:
            self.stage_ref((*at, "stage"), step.stage)
        elif isinstance(step, ActionStep):
            self.check_action(at, step)
        elif isinstance(step, DecisionStep):
            for index, branch in enumerate(step.branches):
                problem = expression_problem(branch.when)
                if problem:
                    self.problem((*at, "branches", index, "when"), problem)

    def stage_ref(self, path: YamlPath, stage: str) -> None:
        org = self.context.org
        if org is None:
            return
        if not org.stages:
            self.problem(
                path,
                f"stage '{stage}' is not declared: list the stages once in org.yaml, "
                "e.g. stages: [suspect, prospect, qualified, quote, won]",
            )
        elif stage not in org.stages:
            hint = did_you_mean(stage, org.stages)
            self.problem(
                path, f"unknown stage '{stage}' (org.yaml declares {', '.join(org.stages)}){hint}"
            )

    def check_fields(self, at: YamlPath, step: TaskStep) -> None:
        for name, spec in step.fields.items():
            path = (*at, "fields", name)
            if isinstance(spec.required, list):
                for index, outcome in enumerate(spec.required):
                    if outcome not in step.outcomes:
                        hint = did_you_mean(outcome, list(step.outcomes))
                        self.problem(
                            (*path, "required", index),
                            f"'{outcome}' is not an outcome of this task "
                            f"({', '.join(step.outcomes)}){hint}",
                        )
            if spec.default is not None:
                problem = field_value_problem(name, spec, spec.default)
                if problem:
                    self.problem((*path, "default"), f"the default does not fit: {problem}")

    def check_sla(self, at: YamlPath, sla: Sla | Clock) -> None:
        if isinstance(sla.within, Targets):
            self.check_template((*at, "within", "by"), sla.within.by)
        self.check_ladder((*at, "escalate"), sla.escalate)

    def check_ladder(self, at: YamlPath, rungs: list[Rung]) -> None:
        for index, rung in enumerate(rungs):
            path = (*at, index)
            # rungs at the same share run in order; `do:` says it in one rung
            if index and rung.at < rungs[index - 1].at:
                self.problem(
                    (*path, "at"),
                    f"escalation rungs must ascend: {rung.at:.0%} comes after "
                    f"{rungs[index - 1].at:.0%}",
                )
            if rung.do is None:
                self.check_rung_action(path, rung.actions[0])
            else:
                for number, action in enumerate(rung.do):
                    self.check_rung_action((*path, "do", number), action)

    def check_rung_action(self, path: YamlPath, action: RungAction) -> None:
        if action.notify is not None:
            self.check_target((*path, "notify"), action.notify, NOTIFY_KINDS, NOTIFY_FORMS)
        if action.reassign is not None:
            self.check_target(
                (*path, "reassign"),
                action.reassign,
                ("manager", "user:", "round-robin:", "least-loaded:"),
                REASSIGN_FORMS,
            )
        if action.set is not None:
            self.check_values((*path, "set"), action.set)
        if action.action is not None:
            self.check_named_action(path, action.action, action.with_, name_key="action")

    def check_action(self, at: YamlPath, step: ActionStep) -> None:
        self.check_named_action(at, step.do, step.with_, name_key="do")

    def check_named_action(
        self, at: YamlPath, do: str, with_: dict[str, Any], *, name_key: str
    ) -> None:
        signature = ACTIONS.get(do)
        if signature is None:
            hint = did_you_mean(do, list(ACTIONS))
            known = ", ".join(sorted(ACTIONS))
            self.problem((*at, name_key), f"no action named '{do}' (known: {known}){hint}")
            return
        if not signature.open_ended:
            allowed = sorted(signature.required | signature.optional)
            for key in with_:
                if key not in allowed:
                    hint = did_you_mean(key, allowed)
                    self.problem(
                        (*at, "with", key),
                        f"action '{do}' takes no '{key}' (it takes {', '.join(allowed)}){hint}",
                        key=True,
                    )
            for key in sorted(signature.required - set(with_)):
                self.problem((*at, "with"), f"action '{do}' needs '{key}' in 'with'", key=True)
        self.check_values((*at, "with"), with_)
        url_param = signature.url_param
        url = with_.get(url_param) if url_param else None
        if url_param and isinstance(url, str) and (problem := url_template_problem(url)):
            self.problem((*at, "with", url_param), problem)
        template = with_.get("template")
        if signature.templated and template is not None:
            if not isinstance(template, str):
                self.problem(
                    (*at, "with", "template"),
                    "expected the name of a template in definitions/templates/, "
                    f"found {describe(template)}",
                )
            elif template not in self.context.templates:
                hint = did_you_mean(str(template), list(self.context.templates))
                self.problem(
                    (*at, "with", "template"),
                    f"no email template '{template}' in definitions/templates/{hint}",
                )
        if signature.templated and template is None and "body" not in with_:
            self.problem((*at, "with"), f"action '{do}' needs a 'template' or a 'body'", key=True)

    def check_values(self, at: YamlPath, value: Any) -> None:
        if isinstance(value, str):
            self.check_template(at, value)
        elif isinstance(value, dict):
            for key, item in value.items():
                self.check_values((*at, key), item)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                self.check_values((*at, index), item)

    def check_template(self, at: YamlPath, text: str) -> None:
        problem = template_problem(text)
        if problem:
            self.problem(at, problem)

    # --- clocks -----------------------------------------------------------------------------

    def point_ref(self, path: YamlPath, text: str) -> None:
        """A clock starts or stops at a step id, `start`, or an event type (dotted)."""
        if text == "start" or text in self.spec.steps or "." in text:
            return
        hint = did_you_mean(text, list(self.spec.steps))
        self.problem(
            path,
            f"'{text}' is neither a step of this process nor an event type like case.closed{hint}",
        )

    def check_clock(self, name: str, clock: Clock) -> None:
        at: YamlPath = ("clocks", name)
        self.point_ref((*at, "starts"), clock.starts)
        for index, stop in enumerate(clock.stops):
            self.point_ref((*at, "stops", index), stop)
        for index, step_id in enumerate(clock.pauses_in):
            self.step_ref((*at, "pauses_in", index), step_id)
        self.check_sla(at, clock)


def validate_process(source: Source, context: Context) -> tuple[ProcessSpec | None, list[Problem]]:
    """Validate a process file and check what it names, reporting every problem at once.

    When some parts are malformed, the rest is still checked: each malformed part is set aside
    (a broken step stands in as an end, a broken optional key is dropped) and the problems the
    stand-ins would cause are not reported.
    """
    spec, problems = validate_model(ProcessSpec, source, "a process")
    if spec is not None:
        return spec, check_process(spec, source, context)
    aside = _set_aside(source.data, problems)
    if aside is None:
        return None, problems
    try:
        stand_in = ProcessSpec.model_validate(aside.repaired)
    except ValidationError:
        return None, problems
    more = [
        p
        for p in check_process(
            stand_in,
            source,
            context,
            loose_edges=aside.loose_edges,
            entries_known=not {("start",), ("on",)} & set(aside.paths),
        )
        if not any(p.path[: len(part)] == part for part in aside.paths)
    ]
    return None, problems + more


_STAND_INS: dict[str, Any] = {"process": "x", "title": "x", "version": 1}


@dataclass
class _SetAside:
    repaired: dict[str, Any]
    paths: list[YamlPath] = field(default_factory=list)
    # step id -> the step ids a malformed step mentions: where it may lead once fixed
    loose_edges: dict[str, set[str]] = field(default_factory=dict)


def _set_aside(data: Any, problems: list[Problem]) -> _SetAside | None:
    if not isinstance(data, dict) or not isinstance(data.get("steps"), dict):
        return None
    aside = _SetAside(repaired={**data, "steps": dict(data["steps"])})
    repaired, steps = aside.repaired, aside.repaired["steps"]
    for problem in problems:
        path = problem.path or _missing_top_level_key(problem.message)
        if not path:
            return None
        top = path[0]
        if top == "steps" and len(path) >= 2 and path[1] in steps:
            aside.loose_edges[str(path[1])] = _mentions(data["steps"][path[1]], set(steps))
            steps[path[1]] = {"kind": "end"}
            aside.paths.append(path[:2])
        elif top in _STAND_INS:
            repaired[str(top)] = _STAND_INS[str(top)]
        elif top == "start" and steps:
            repaired["start"] = next(iter(steps))
            aside.paths.append(("start",))
        elif top == "calendar" and context_free_calendar(repaired):
            aside.paths.append(("calendar",))
        elif top in ProcessSpec.model_fields and top not in ("steps", "calendar", "start"):
            repaired.pop(str(top), None)
            aside.paths.append((top,))
        elif len(path) == 1 and top not in ProcessSpec.model_fields:
            repaired.pop(str(top), None)  # an unknown top-level key: reported, nothing to check
        else:
            return None
    return aside


def _missing_top_level_key(message: str) -> YamlPath:
    match = re.fullmatch(r"missing required key '([^']+)'", message)
    return (match.group(1),) if match else ()


def _mentions(value: Any, step_ids: set[str]) -> set[str]:
    """Every step id a malformed step names anywhere inside it."""
    if isinstance(value, str):
        return {value} & step_ids
    if isinstance(value, dict):
        return set().union(*(_mentions(item, step_ids) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(_mentions(item, step_ids) for item in value))
    return set()


def context_free_calendar(data: dict[str, Any]) -> bool:
    """Stand in a text calendar name so the rest can be checked; its own problem is reported."""
    data["calendar"] = str(data.get("calendar") or "x")
    return True
