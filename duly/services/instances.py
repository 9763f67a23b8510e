"""Instances: start one, list them, and one with its live state and history."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, func, select
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client

from duly import client as duly_client
from duly.language.loader import Definitions
from duly.services.access import instances_visible, require_start
from duly.services.auth import Principal
from duly.services.context import ServiceContext
from duly.services.errors import NotAllowed, NotFound, ServiceError, translated
from duly.services.schemas import (
    InstanceDetail,
    Page,
    SlaEventView,
    StartInstanceRequest,
    StartInstanceResponse,
    StepFactView,
)
from duly.store.models import Instance, InstancePublic, SlaEventRow, StepFact, Task, TaskPublic
from workflows.messages import InstanceState

STATE_TIMEOUT = 5.0
"""Seconds to wait for a running instance to answer its state query."""

DESCRIBE_TIMEOUT = 1.0
"""Seconds to wait for the server to say why an instance did not answer."""


def list_instances(
    *,
    session: Session,
    principal: Principal,
    definitions: Definitions,
    process: str | None = None,
    status: str | None = None,
    key: str | None = None,
    limit: int = 50,
    offset: int = 0,
) -> Page[InstancePublic]:
    """Instances the principal may see, newest first.

    Args:
        session: A database session.
        principal: Who asks.
        definitions: The loaded definitions (which team each process belongs to).
        process: Only this process's instances.
        status: Only `running`, `completed` or `failed` ones.
        key: Only this business key's.
        limit: At most this many.
        offset: Skip this many first.
    """
    where = [instances_visible(principal, definitions)]
    if process is not None:
        where.append(col(Instance.process) == process)
    if status is not None:
        where.append(col(Instance.status) == status)
    if key is not None:
        where.append(col(Instance.business_key) == key)
    total = session.exec(select(func.count()).select_from(Instance).where(*where)).one()
    rows = session.exec(
        select(Instance)
        .where(*where)
        .order_by(col(Instance.started_at).desc(), col(Instance.id))
        .offset(offset)
        .limit(limit)
    ).all()
    return Page[InstancePublic](
        items=[InstancePublic.model_validate(row) for row in rows],
        total=total,
        limit=limit,
        offset=offset,
    )


def find_instance(*, session: Session, address: str) -> Instance | None:
    """The instance row an address names (`duly.client.parse_address`), if there is one.

    An instance id names that instance; `<process>/<business key>` the key's latest one.

    Raises:
        NotFound: The text cannot name an instance at all.
    """
    try:
        target = duly_client.parse_address(address)
    except duly_client.NotAnAddress as exc:
        raise NotFound(str(exc)) from None
    if target.instance_id is not None:
        return session.get(Instance, target.instance_id)
    return session.exec(
        select(Instance)
        .where(col(Instance.workflow_id) == target.workflow_id)
        .order_by(col(Instance.started_at).desc(), col(Instance.id).desc())
    ).first()


def instance_record(
    *, session: Session, principal: Principal, definitions: Definitions, instance_id: str
) -> InstanceDetail:
    """An instance as the database has it: its row, tasks, step facts and SLA events.

    Args:
        session: A database session.
        principal: Who asks.
        definitions: The loaded definitions.
        instance_id: An instance address: its id, or `<process>/<business key>` for the key's
            latest instance.

    Raises:
        NotFound: No such instance.
        NotAllowed: Not one the principal may see.
    """
    found = find_instance(session=session, address=instance_id)
    if found is None:
        raise NotFound(f"no instance '{instance_id}'")
    instance_id = found.id
    row = session.exec(
        select(Instance).where(
            col(Instance.id) == instance_id, instances_visible(principal, definitions)
        )
    ).first()
    if row is None:
        raise NotAllowed(f"instance {instance_id} has no task of yours or of your teams")
    tasks = session.exec(
        select(Task).where(Task.instance_id == instance_id).order_by(col(Task.opened_at))
    ).all()
    facts = session.exec(
        select(StepFact)
        .where(StepFact.instance_id == instance_id)
        .order_by(col(StepFact.closed_at), col(StepFact.id))
    ).all()
    events = session.exec(
        select(SlaEventRow)
        .where(SlaEventRow.instance_id == instance_id)
        .order_by(col(SlaEventRow.seq))
    ).all()
    return InstanceDetail(
        instance=InstancePublic.model_validate(row),
        tasks=[TaskPublic.model_validate(task) for task in tasks],
        facts=[StepFactView.model_validate(fact, from_attributes=True) for fact in facts],
        sla_events=[SlaEventView.model_validate(e, from_attributes=True) for e in events],
    )


async def instance_detail(
    context: ServiceContext, principal: Principal, instance_id: str, *, wait: float = STATE_TIMEOUT
) -> InstanceDetail:
    """An instance with its history and, while it runs, its live state.

    When the live state cannot be had (Temporal is down, no worker answers), the rest is
    returned all the same, with `state_error` saying why.

    Args:
        context: The API's context.
        principal: Who asks.
        instance_id: An instance address: its id, or `<process>/<business key>` for the key's
            latest instance. The live state comes from the instance's current run, however
            often it has continued as new.
        wait: Seconds to wait for the live state.

    Raises:
        NotFound: No such instance.
        NotAllowed: Not one the principal may see.
    """

    def record() -> InstanceDetail:
        with context.read() as session:
            return instance_record(
                session=session,
                principal=principal,
                definitions=context.definitions,
                instance_id=instance_id,
            )

    detail = await run_in_threadpool(record)
    if detail.instance.status != "running":
        return detail
    try:
        detail.state = await live_state(context, detail.instance.id, wait=wait)
    except ServiceError as exc:
        detail.state_error = exc.message
    return detail


async def live_state(
    context: ServiceContext, instance_id: str, *, wait: float = STATE_TIMEOUT
) -> InstanceState:
    """The state query's answer, within `wait` seconds.

    Raises:
        ServiceError: Temporal or the instance did not answer (`Unavailable`: the message says
            whether the instance has work queued that it must do first), or there is no such
            instance (`NotFound`).
    """
    client = await context.temporal.get()
    with translated():
        try:
            return await asyncio.wait_for(duly_client.instance_state(client, instance_id), wait)
        except TimeoutError:
            raise duly_client.ClientError(await _unanswered(client, instance_id, wait)) from None


async def _unanswered(client: Client, instance_id: str, wait: float) -> str:
    """Why an instance did not answer within `wait` seconds, as far as the server can tell."""
    try:
        async with asyncio.timeout(DESCRIBE_TIMEOUT):
            queued = await duly_client.queued_since(client, instance_id)
    except (TimeoutError, duly_client.ClientError):
        return (
            f"{instance_id} did not answer within {wait:g} s, and the Temporal server did not "
            f"say why within {DESCRIBE_TIMEOUT:g} s: it is busy or out of reach. Try again in "
            "a minute; if this lasts, check the server and that a duly worker is running."
        )
    if queued is None:
        # Nothing for it to do first, so the query went straight to a worker: none took it
        return (
            f"{instance_id} did not answer within {wait:g} s and has no work queued: its "
            "worker is busy or not running. If this lasts, check that a duly worker is running."
        )
    waited = max(0.0, (datetime.now(UTC) - queued).total_seconds())
    return (
        f"{instance_id} has work queued {waited:.0f} s ago that it must do before it answers "
        "(a burst of breaches is worked through within a minute); its live state shows once a "
        "worker has done it. If this lasts, check that a duly worker is running."
    )


async def start_instance(
    context: ServiceContext, principal: Principal, request: StartInstanceRequest
) -> StartInstanceResponse:
    """Start an instance of a process on data.

    Raises:
        NotFound: No such process.
        NotAllowed: A rep, or a manager and another team's process.
        Invalid: The data does not give the business key.
        Conflict: An instance for the key is still running.
        Unavailable: Temporal did not answer.
    """
    definitions = context.definitions
    compiled = definitions.processes.get(request.process)
    if compiled is None:
        unknown = duly_client.UnknownProcess(request.process, list(definitions.processes))
        raise NotFound(str(unknown))
    require_start(principal, definitions, request.process)
    data: dict[str, Any] = request.data
    with translated():
        duly_client.business_key(compiled, data)  # a missing key is refused before connecting
    client = await context.temporal.get()
    with translated():
        started = await duly_client.start_instance(
            client, definitions, request.process, data, task_queue=context.settings.task_queue
        )
    return StartInstanceResponse(instance_id=started)
