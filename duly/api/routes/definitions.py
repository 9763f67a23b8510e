"""Process definitions and their flowcharts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from duly.api.deps import Context, CurrentUser
from duly.api.routes import problems
from duly.api.schemas import DefinitionDetail, DefinitionSummary
from duly.api.services import definitions

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
