"""Tasks: the inbox, one task, complete, reassign."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from duly.api.deps import Context, CurrentUser, DbSession
from duly.api.routes import problems
from duly.services import tasks
from duly.services.schemas import (
    MAX_PAGE,
    CompleteTaskRequest,
    CompleteTaskResponse,
    Page,
    ReassignTaskRequest,
    ReassignTaskResponse,
    TaskView,
)
from duly.services.tasks import TaskScope, TaskStatus

router = APIRouter(tags=["tasks"])


@router.get("/api/tasks", response_model=Page[TaskView], responses=problems(401))
def list_tasks(
    context: Context,
    session: DbSession,
    user: CurrentUser,
    scope: Annotated[
        TaskScope,
        Query(description="mine: assigned to me (the inbox); all: every task I may see"),
    ] = "mine",
    status: TaskStatus = "open",
    process: Annotated[str | None, Query(max_length=100)] = None,
    assignee: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> Page[TaskView]:
    """My open tasks, soonest due first, with the business time left on each."""
    return tasks.list_tasks(
        session=session,
        principal=user,
        definitions=context.definitions,
        scope=scope,
        status=status,
        process=process,
        assignee=assignee,
        limit=limit,
        offset=offset,
    )


@router.post(
    "/api/tasks/{task_id:path}/complete",
    response_model=CompleteTaskResponse,
    responses=problems(400, 401, 403, 404, 409, 413, 422, 503),
)
async def complete_task(
    task_id: str, request: CompleteTaskRequest, context: Context, user: CurrentUser
) -> CompleteTaskResponse:
    """Complete my task with one of its outcomes, a note, and the fields its step asks for.

    409 when the task is no longer open (completed already, or an event moved the instance
    on); 422 with the reason when the outcome or a field is wrong.
    """
    return await tasks.complete_task(context, user, task_id, request)


@router.post(
    "/api/tasks/{task_id:path}/reassign",
    response_model=ReassignTaskResponse,
    responses=problems(400, 401, 403, 404, 409, 413, 422, 503),
)
async def reassign_task(
    task_id: str, request: ReassignTaskRequest, context: Context, user: CurrentUser
) -> ReassignTaskResponse:
    """Hand a task to someone else (managers: within their teams; admins: anyone)."""
    return await tasks.reassign_task(context, user, task_id, request.to)


@router.get("/api/tasks/{task_id:path}", response_model=TaskView, responses=problems(401, 403, 404))
def get_task(task_id: str, context: Context, session: DbSession, user: CurrentUser) -> TaskView:
    """One task: its outcomes, fields, assignee, due time and business time left."""
    return tasks.get_task(
        session=session, principal=user, definitions=context.definitions, task_id=task_id
    )
