"""Tasks: a rep's inbox, one task, completing and reassigning.

Reads run on a session the caller gives; completing and reassigning go through the instance's
workflow (its Updates), after checking here who may, so a refused call changes nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from sqlmodel import Session, col, func, select
from starlette.concurrency import run_in_threadpool

from duly import client as duly_client
from duly.language import business_time
from duly.language.loader import Definitions
from duly.services.access import can_see_task, require_complete, require_reassign, tasks_visible
from duly.services.auth import Principal
from duly.services.context import ServiceContext
from duly.services.errors import Conflict, Invalid, NotAllowed, NotFound, translated
from duly.services.schemas import (
    CompleteTaskRequest,
    CompleteTaskResponse,
    Page,
    ReassignTaskResponse,
    TaskView,
)
from duly.store.models import Task, User
from duly.store.types import utc_now
from workflows.messages import closed_as

TaskScope = Literal["mine", "all"]
TaskStatus = Literal["open", "completed", "cancelled", "any"]


def list_tasks(
    *,
    session: Session,
    principal: Principal,
    definitions: Definitions,
    scope: TaskScope = "mine",
    status: TaskStatus = "open",
    process: str | None = None,
    assignee: str | None = None,
    limit: int = 50,
    offset: int = 0,
    now: datetime | None = None,
) -> Page[TaskView]:
    """Tasks the principal may see, soonest due first (tasks without a due time last).

    Args:
        session: A database session.
        principal: Who asks.
        definitions: The loaded definitions (each process's calendar, for the time left).
        scope: `mine`: tasks assigned to the principal (a rep's inbox); `all`: every task they
            may see (a manager's teams', an admin's everything).
        status: Which tasks: `open` (default), `completed`, `cancelled` or `any`.
        process: Only this process's tasks.
        assignee: Only this user's tasks.
        limit: At most this many.
        offset: Skip this many first.
        now: The time to count the time left from; defaults to now.
    """
    where = [col(Task.assignee) == principal.id if scope == "mine" else tasks_visible(principal)]
    if status != "any":
        where.append(col(Task.status) == status)
    if process is not None:
        where.append(col(Task.process) == process)
    if assignee is not None:
        where.append(col(Task.assignee) == assignee)
    total = session.exec(select(func.count()).select_from(Task).where(*where)).one()
    rows = session.exec(
        select(Task)
        .where(*where)
        .order_by(col(Task.due_at).asc().nulls_last(), col(Task.opened_at), col(Task.id))
        .offset(offset)
        .limit(limit)
    ).all()
    moment = now or utc_now()
    return Page[TaskView](
        items=[task_view(task, definitions, moment) for task in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


def get_task(
    *,
    session: Session,
    principal: Principal,
    definitions: Definitions,
    task_id: str,
    now: datetime | None = None,
) -> TaskView:
    """One task the principal may see.

    Raises:
        NotFound: No such task.
        NotAllowed: Not a task the principal may see.
    """
    return task_view(_visible_task(session, principal, task_id), definitions, now or utc_now())


def task_view(task: Task, definitions: Definitions, now: datetime) -> TaskView:
    """A task row with the business time left until its due time."""
    left = business_seconds_left(definitions, task.process, task.due_at, now)
    values: dict[str, Any] = task.model_dump()
    return TaskView(
        **values,
        business_seconds_left=left,
        overdue=task.status == "open" and left is not None and left < 0,
    )


def business_seconds_left(
    definitions: Definitions, process: str, due_at: datetime | None, now: datetime
) -> float | None:
    """Open time of the process's calendar from now until due; negative once overdue.

    A process no longer defined has no calendar to count on: its tasks count wall-clock time.
    """
    if due_at is None:
        return None
    compiled = definitions.processes.get(process)
    if compiled is None:
        return (due_at - now).total_seconds()
    if now <= due_at:
        return business_time.elapsed(compiled.calendar, now, due_at).total_seconds()
    return -business_time.elapsed(compiled.calendar, due_at, now).total_seconds()


async def complete_task(
    context: ServiceContext, principal: Principal, task_id: str, request: CompleteTaskRequest
) -> CompleteTaskResponse:
    """Complete an open task through its instance's `complete_task` Update.

    Raises:
        NotFound: No such task.
        NotAllowed: Not the principal's task (nothing changed).
        Conflict: The task is no longer open (completed twice, or moved on by an event).
        Invalid: An outcome the step does not have, or fields it does not accept.
        Unavailable: Temporal did not answer.
    """

    def check() -> Task:
        with context.read() as session:
            task = _visible_task(session, principal, task_id)
        require_complete(principal, task)
        _require_open(task)
        return task

    await run_in_threadpool(check)
    client = await context.temporal.get()
    with translated():
        result = await duly_client.complete_task(
            client, task_id, request.outcome, request.note, request.fields, by=principal.id
        )
    return CompleteTaskResponse(
        task_id=result.task_id, outcome=result.outcome, next_step=result.next_step
    )


async def reassign_task(
    context: ServiceContext, principal: Principal, task_id: str, to: str
) -> ReassignTaskResponse:
    """Hand an open task to another user through its instance's `reassign_task` Update.

    The new assignee gets an alert saying so; the instance's record (and the fact table) name
    them from now on.

    Raises:
        NotFound: No such task.
        NotAllowed: A rep, or a manager outside their teams (nothing changed).
        Conflict: The task is no longer open.
        Invalid: `to` is not an active user, or already has the task.
        Unavailable: Temporal did not answer.
    """

    def check() -> None:
        with context.read() as session:
            task = _visible_task(session, principal, task_id)
            require_reassign(principal, task, to)
            _require_open(task)
            user = session.get(User, to)
        if user is None or not user.active:
            raise Invalid(f"no active user '{to}' in org.yaml to hand the task to")
        if task.assignee == to:
            raise Invalid(f"task {task_id} is already assigned to {to}")

    if not principal.is_admin and not principal.manages:
        raise NotAllowed("only managers and admins may reassign tasks; ask your manager")
    await run_in_threadpool(check)
    client = await context.temporal.get()
    with translated():
        result = await duly_client.reassign_task(client, task_id, to, by=principal.id)
    return ReassignTaskResponse(
        task_id=result.task_id, assignee=result.assignee, previous=result.previous
    )


def _visible_task(session: Session, principal: Principal, task_id: str) -> Task:
    task = session.get(Task, task_id)
    if task is None:
        raise NotFound(f"no task '{task_id}'")
    if not can_see_task(principal, task):
        owner = f"assigned to {task.assignee}" if task.assignee else "unassigned"
        raise NotAllowed(
            f"task {task_id} is {owner}: you may see only your own tasks"
            + (" and your teams'" if principal.manages else "")
        )
    return task


def _require_open(task: Task) -> None:
    if task.status != "open":
        closed = closed_as(task.status, task.outcome, task.closed_by)
        raise Conflict(f"task {task.id} is {closed}, no longer open")
