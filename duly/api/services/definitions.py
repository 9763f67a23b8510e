"""Process definitions, as loaded from definitions/, with their flowcharts."""

from __future__ import annotations

from duly.api.errors import NotFound
from duly.api.schemas import DefinitionDetail, DefinitionSummary
from duly.language.compiler import CompiledProcess
from duly.language.diagram import mermaid
from duly.language.diagram_svg import svg
from duly.language.loader import Definitions


def list_definitions(definitions: Definitions) -> list[DefinitionSummary]:
    """Every process, by id."""
    return [summary(process) for _, process in sorted(definitions.processes.items())]


def get_definition(
    definitions: Definitions, process: str, *, highlight: str | None = None
) -> DefinitionDetail:
    """One process, whole, with its flowchart as Mermaid source and as SVG.

    Args:
        definitions: The loaded definitions.
        process: The process id.
        highlight: A step to draw emphasized (an instance's current step).

    Raises:
        NotFound: No such process.
    """
    compiled = definitions.processes.get(process)
    if compiled is None:
        known = ", ".join(sorted(definitions.processes)) or "none"
        raise NotFound(f"no process '{process}' (known: {known})")
    spec = compiled.spec
    return DefinitionDetail(
        **summary(compiled).model_dump(),
        description=spec.description,
        spec=spec.model_dump(mode="json", by_alias=True, exclude_none=True),
        mermaid=mermaid(spec, highlight=highlight),
        svg=svg(spec, highlight=highlight),
    )


def summary(process: CompiledProcess) -> DefinitionSummary:
    """A process in short."""
    spec = process.spec
    return DefinitionSummary(
        process=process.name,
        title=spec.title,
        version=process.version,
        hash=process.hash,
        calendar=spec.calendar,
        team=spec.team,
        trigger_event=", ".join(spec.trigger.types) if spec.trigger else None,
        steps=len(spec.steps),
    )
