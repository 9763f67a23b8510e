"""The flowchart behind a process: which step leads to which, and under what label."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from duly.language.errors import YamlPath
from duly.language.model import (
    ActionStep,
    DecisionStep,
    EndStep,
    ProcessSpec,
    Step,
    TaskStep,
    WaitStep,
)


@dataclass(frozen=True)
class Transition:
    """An edge of the flowchart: a label (outcome, `next`, a condition) and its target step."""

    label: str
    target: str
    path: YamlPath  # where the target is written, relative to the step


def transitions(step: Step) -> list[Transition]:
    """Every edge leaving a step, in the order the admin wrote them."""
    match step:
        case TaskStep():
            return [Transition(o, t, ("outcomes", o)) for o, t in step.outcomes.items()]
        case ActionStep():
            edges = [Transition("", step.next, ("next",))]
            if step.on_error:
                edges.append(Transition("error", step.on_error, ("on_error",)))
            return edges
        case WaitStep():
            label = step.until or (str(step.for_) if step.for_ else "")
            edges = [Transition(label, step.next, ("next",))]
            if step.on_timeout:
                edges.append(
                    Transition(f"timeout {step.timeout}", step.on_timeout, ("on_timeout",))
                )
            return edges
        case DecisionStep():
            edges = [
                Transition(b.when, b.next, ("branches", i, "next"))
                for i, b in enumerate(step.branches)
            ]
            return [*edges, Transition("otherwise", step.otherwise, ("otherwise",))]
        case EndStep():
            return []
    raise TypeError(f"unknown step {step!r}")


def reachable(spec: ProcessSpec) -> set[str]:
    """Steps an instance can reach: from `start`, and from any step through `on:` events."""
    return _search(spec, [spec.start, *spec.on.values()], forward=True)


def can_finish(spec: ProcessSpec) -> set[str]:
    """Steps from which some path leads to an end step."""
    ends = [sid for sid, step in spec.steps.items() if isinstance(step, EndStep)]
    return _search(spec, ends, forward=False)


def _search(spec: ProcessSpec, roots: Iterable[str], *, forward: bool) -> set[str]:
    edges: dict[str, set[str]] = {sid: set() for sid in spec.steps}
    for sid, step in spec.steps.items():
        for edge in transitions(step):
            if edge.target in spec.steps:
                if forward:
                    edges[sid].add(edge.target)
                else:
                    edges[edge.target].add(sid)
    return closure(roots, edges)


def closure(roots: Iterable[str], edges: dict[str, set[str]]) -> set[str]:
    """Every node reachable from `roots` along `edges` (roots not in `edges` are ignored)."""
    seen = {root for root in roots if root in edges}
    queue = deque(seen)
    while queue:
        for nxt in edges[queue.popleft()] - seen:
            seen.add(nxt)
            queue.append(nxt)
    return seen
