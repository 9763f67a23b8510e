"""Instances: start, list, one with its live state and history."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from duly.api.deps import Context, CurrentUser, DbSession
from duly.api.json_body import read_json
from duly.api.routes import problems
from duly.services import instances
from duly.services.schemas import (
    MAX_PAGE,
    InstanceDetail,
    Page,
    StartInstanceRequest,
    StartInstanceResponse,
)
from duly.store.models import InstancePublic

router = APIRouter(tags=["instances"])


@router.post(
    "/api/instances",
    response_model=StartInstanceResponse,
    status_code=201,
    responses=problems(400, 401, 403, 404, 409, 413, 422, 503),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": StartInstanceRequest.model_json_schema()}},
        }
    },
)
async def start_instance(
    request: Request, context: Context, user: CurrentUser
) -> StartInstanceResponse:
    """Start an instance of a process on data (managers: their teams' processes; admins: any).

    The business key comes from the data by the process's `trigger.key`: 409 while an
    instance for the key is still running, 422 when the data lacks it (or gives a key that
    cannot name an instance). Data over duly's event limits answers 422 naming the field.
    """
    # read here, not by FastAPI: its JSON reading fails on hostile input (deep, huge numbers)
    document = await run_in_threadpool(read_json, await request.body())
    try:
        start = StartInstanceRequest.model_validate(document)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None
    return await instances.start_instance(context, user, start)


@router.get("/api/instances", response_model=Page[InstancePublic], responses=problems(401))
def list_instances(
    context: Context,
    session: DbSession,
    user: CurrentUser,
    process: Annotated[str | None, Query(max_length=100)] = None,
    status: Literal["running", "completed", "failed"] | None = None,
    key: Annotated[str | None, Query(max_length=1000, description="a business key")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page[InstancePublic]:
    """Instances I may see, newest first."""
    return instances.list_instances(
        session=session,
        principal=user,
        definitions=context.definitions,
        process=process,
        status=status,
        key=key,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/api/instances/{instance_id:path}",
    response_model=InstanceDetail,
    responses=problems(401, 403, 404),
)
async def get_instance(instance_id: str, context: Context, user: CurrentUser) -> InstanceDetail:
    """One instance: its row, live state (while it runs), tasks, step facts and SLA events."""
    return await instances.instance_detail(context, user, instance_id)
