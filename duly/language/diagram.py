"""Draw a process as a Mermaid flowchart: steps as shapes, outcomes and SLAs on the edges."""

from __future__ import annotations

import re

from duly.language.graph import transitions
from duly.language.model import (
    ActionStep,
    DecisionStep,
    EndStep,
    ProcessSpec,
    Sla,
    Step,
    Targets,
    TaskStep,
    WaitStep,
)

# Mermaid shapes per step kind: open and close brackets around the label
_SHAPES: dict[type, tuple[str, str]] = {
    TaskStep: ('["', '"]'),
    ActionStep: ('[["', '"]]'),
    WaitStep: ('{{"', '"}}'),
    DecisionStep: ('{"', '"}'),
    EndStep: ('(["', '"])'),
}


def node_id(step_id: str) -> str:
    """A Mermaid-safe node id for a step id (Mermaid reads '-' and 'end' specially)."""
    return "s_" + re.sub(r"[^a-zA-Z0-9_]", "_", step_id)


def sla_text(sla: Sla | None) -> str:
    """`SLA 2 business days`, or `SLA by case.priority` for targets chosen by data."""
    if sla is None:
        return ""
    if isinstance(sla.within, Targets):
        return "SLA by " + sla.within.by.strip("{} ")
    return f"SLA {sla.within}"


def mermaid(spec: ProcessSpec, *, highlight: str | None = None) -> str:
    """The Mermaid source of a process's flowchart; `highlight` marks the current step."""
    lines = ["flowchart TD", '  start(("start"))']
    for step_id, step in spec.steps.items():
        open_, close = _SHAPES[type(step)]
        lines.append(f"  {node_id(step_id)}{open_}{_escape(_label(step_id, step))}{close}")
    incoming = dict.fromkeys(spec.steps, "")
    for step_id, step in spec.steps.items():
        if isinstance(step, TaskStep):
            incoming[step_id] = sla_text(step.sla)
    lines.append(_edge("start", spec.start, incoming.get(spec.start, ""), first=True))
    for step_id, step in spec.steps.items():
        for edge in transitions(step):
            label = " · ".join(part for part in (edge.label, incoming.get(edge.target, "")) if part)
            lines.append(_edge(step_id, edge.target, label))
    if spec.on:
        lines.append('  any(("any step"))')
        for event, target in spec.on.items():
            lines.append(f'  any -. "{_escape(event)}" .-> {node_id(target)}')
    # "end" is a Mermaid keyword: the class of end steps is called "finish"
    lines.append("  classDef finish fill:#e8f5e9,stroke:#2e7d32")
    lines.append("  classDef current fill:#fff3cd,stroke:#b8860b,stroke-width:3px")
    ends = [node_id(s) for s, step in spec.steps.items() if isinstance(step, EndStep)]
    if ends:
        lines.append(f"  class {','.join(ends)} finish")
    if highlight in spec.steps:
        lines.append(f"  class {node_id(highlight)} current")
    return "\n".join(lines) + "\n"


def step_kind(step_id: str, step: Step) -> str:
    """A step's kind and what it does, in a few words: `task · owner`, `wait 1 business day`."""
    match step:
        case TaskStep():
            return f"task · {step.assign}"
        case ActionStep():
            return f"action · {step.do}"
        case WaitStep():
            return f"wait {step.for_}" if step.for_ else f"wait for {step.until}"
        case DecisionStep():
            return "decision"
        case EndStep():
            return f"end · {step.result or step_id}"
    raise TypeError(f"unknown step {step!r}")


def _label(step_id: str, step: Step) -> str:
    title = step.title or step_id
    detail = step_kind(step_id, step)
    heading = title if title == step_id else f"{title}<br/><small>{step_id}</small>"
    return f"{heading}<br/><small>{detail}</small>"


def _edge(source: str, target: str, label: str, *, first: bool = False) -> str:
    src = "start" if first else node_id(source)
    if label:
        return f'  {src} -- "{_escape(label)}" --> {node_id(target)}'
    return f"  {src} --> {node_id(target)}"


def _escape(text: str) -> str:
    return text.replace('"', "#quot;").replace("\n", " ")
