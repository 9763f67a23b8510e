"""Process definitions and their flowcharts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from duly.api.deps import Context, CurrentUser
from duly.api.routes import problems
from duly.services import definitions, unheard
from duly.services.definitions import PublishedOut, PublishPlanOut
from duly.services.schemas import DefinitionDetail, DefinitionSummary
from duly.services.unheard import ReplayOut, UnheardOut

router = APIRouter(tags=["definitions"])


@router.get("/api/definitions", response_model=list[DefinitionSummary], responses=problems(401))
def list_definitions(context: Context, user: CurrentUser) -> list[DefinitionSummary]:
    """Every process duly runs."""
    return definitions.list_definitions(context.definitions)


@router.get(
    "/api/definitions/{process}",
    response_model=DefinitionDetail,
    responses=problems(401, 404),
)
def get_definition(
    process: str,
    context: Context,
    user: CurrentUser,
    highlight: Annotated[
        str | None, Query(max_length=100, description="a step to draw emphasized")
    ] = None,
) -> DefinitionDetail:
    """One process, whole, with its flowchart (Mermaid source and SVG)."""
    return definitions.get_definition(context.definitions, process, highlight=highlight)


# --- publishing and unheard events (admins) ------------------------------------------------------


@router.get("/api/publish", response_model=PublishPlanOut, responses=problems(401, 403, 422))
def publish_plan(context: Context, user: CurrentUser) -> PublishPlanOut:
    """What publishing the definitions folder would change: steps, SLAs, running instances."""
    definitions.require_admin(user)
    return definitions.publish_plan(context)


@router.post("/api/publish", response_model=PublishedOut, responses=problems(401, 403, 409, 422))
def publish(context: Context, user: CurrentUser) -> PublishedOut:
    """Validate and publish the definitions folder, all or nothing; running processes pick it up.

    422 when the folder does not validate, 409 when a process changed without a new `version:`;
    either way nothing is published.
    """
    definitions.require_admin(user)
    return definitions.publish(context, user)


@router.get("/api/unheard", response_model=list[UnheardOut], responses=problems(401, 403))
def list_unheard(
    context: Context,
    user: CurrentUser,
    pending: Annotated[bool, Query(description="only those not replayed yet")] = False,
) -> list[UnheardOut]:
    """Events no published process listened to, newest first, kept for replay."""
    definitions.require_admin(user)
    return unheard.listed(context, pending_only=pending)


@router.post("/api/unheard/replay", response_model=list[ReplayOut], responses=problems(401, 403))
async def replay_unheard(context: Context, user: CurrentUser) -> list[ReplayOut]:
    """Replay, once each, the kept events a published process now listens to."""
    definitions.require_admin(user)
    return await unheard.replay(context)
