"""Process definitions, as loaded from definitions/, with their flowcharts."""

from __future__ import annotations

from pydantic import BaseModel, Field

from duly import published
from duly.language.compiler import CompiledProcess
from duly.language.diagram import mermaid
from duly.language.diagram_svg import svg
from duly.language.errors import DefinitionError
from duly.language.loader import Definitions
from duly.services.auth import Principal
from duly.services.context import ServiceContext
from duly.services.errors import Conflict, Invalid, NotAllowed, NotFound
from duly.services.schemas import DefinitionDetail, DefinitionSummary
from duly.store import crud


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


# --- publishing ------------------------------------------------------------------------------


class ProcessChangeOut(BaseModel):
    """What publishing changes in one process."""

    process: str
    before: int | None = Field(description="the version published now; null: a new process")
    after: int | None = Field(description="the version to publish; null: withdrawn")
    steps_added: list[str]
    steps_removed: list[str]
    steps_changed: list[str]
    slas: list[str] = Field(description="one line per SLA or clock that differs")
    running: dict[int, int] = Field(description="running instances by version: they keep it")


class PublishPlanOut(BaseModel):
    """The definitions folder beside the published set."""

    revision: int | None = Field(description="the revision published now; null: none yet")
    unchanged: bool = Field(description="true: the folder is what is published")
    processes: list[ProcessChangeOut]
    files_changed: list[str]
    lines: list[str] = Field(description="the same, for people")
    problems: list[str] = Field(default=[], description="why the folder cannot be published")


class PublishedOut(PublishPlanOut):
    """What a publish did."""

    published: int | None = Field(description="the revision now current; null: refused")
    created: bool = False


def require_admin(principal: Principal) -> None:
    """Publishing and unheard events are for admins.

    Raises:
        NotAllowed: Not an admin.
    """
    if not principal.is_admin:
        raise NotAllowed("only admins publish definitions and replay unheard events")


def _plan_out(plan: published.PublishPlan) -> dict[str, object]:
    return {
        "revision": plan.revision,
        "unchanged": plan.unchanged,
        "processes": [ProcessChangeOut(**vars(change)) for change in plan.processes],
        "files_changed": plan.files_changed,
        "lines": plan.lines(),
    }


def publish_plan(context: ServiceContext) -> PublishPlanOut:
    """Validate the server's definitions folder and show what publishing it changes.

    Raises:
        Invalid: The folder does not validate (every problem, with file:line:col).
    """
    with context.read() as session:
        try:
            plan = published.plan(session, context.settings.definitions)
        except DefinitionError as exc:
            raise Invalid(exc.report()) from None
    return PublishPlanOut(**_plan_out(plan))


def publish(context: ServiceContext, principal: Principal) -> PublishedOut:
    """Validate and publish the server's definitions folder, all or nothing.

    Raises:
        Invalid: The folder does not validate; nothing was published.
        Conflict: A process changed without raising its version; nothing was published.
    """
    try:
        with context.write() as session:
            done = published.publish(session, context.settings.definitions, by=principal.id)
    except DefinitionError as exc:
        raise Invalid(exc.report()) from None
    except crud.VersionConflicts as exc:
        raise Conflict(f"nothing was published:\n{exc}") from None
    return PublishedOut(
        **_plan_out(done.plan),
        published=done.revision,
        created=done.created,
    )
