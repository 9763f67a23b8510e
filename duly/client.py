"""Start, route events to, complete tasks of and read process instances.

What the `duly` command and the web API call. An instance runs as the workflow
`<process>/<business key>`, where the key is the process's `trigger.key` template rendered on
the data of the event that concerns it: the same rule routes the starting event and every later
one. A key may start again once its instance ended, so an instance's own id adds the first run
id's tail: `<process>/<business key>/<run>`; tasks are `<instance id>/<step>/<visit>`.

Every command and API route addresses an instance the same way (`parse_address`): its instance
id, or `<process>/<business key>` for the key's latest instance. A business key never holds a
`/` (nor anything else a URL path would change: see `check_key`), so the two forms cannot be
mistaken for one another, and an instance id always names one instance, whichever run of it
(after a continue-as-new) is current.
"""

from __future__ import annotations

import asyncio
import unicodedata
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeVar

import structlog
from temporalio.client import (
    Client,
    WorkflowExecutionStatus,
    WorkflowQueryFailedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import Priority, WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from duly.event_limits import check_event
from duly.language.compiler import CompiledProcess
from duly.language.expressions import ExpressionError, evaluate, render
from duly.language.loader import Definitions
from duly.language.model import TaskStep, WaitStep
from duly.settings import get_settings
from workflows.messages import (
    TASK_NOT_OPEN,
    WORKFLOW_NAME,
    CompleteTaskInput,
    CompleteTaskResult,
    EventInput,
    InstanceState,
    ProcessInput,
    ProcessResult,
    ReassignTaskInput,
    ReassignTaskResult,
    instance_id,
    workflow_id,
    workflow_of,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")

EVENT_SIGNAL = "event"
COMPLETE_TASK_UPDATE = "complete_task"
REASSIGN_TASK_UPDATE = "reassign_task"
STATE_QUERY = "state"
VISIBILITY_ATTEMPTS = 6
MAX_KEY_CHARS = 200
"""Characters in a business key: the workflow id (process, `/`, key) stays far below
Temporal's 1,000-byte id limit, whatever the script the key is written in."""
# What a business key may not hold: each would change what an instance id in a URL path names
# (`/` separates the id's parts, `\\` is a `/` to browsers, `?` and `#` end a path, `%` starts
# an escape); dot segments are normalised away by clients.
KEY_FORBIDDEN = {"/": "a '/'", "\\": "a '\\'", "?": "a '?'", "#": "a '#'", "%": "a '%'"}


class ClientError(Exception):
    """A request duly refused; the message says what was wrong, for the user to read."""


class UnknownProcess(ClientError):
    """No process of that name is defined."""

    def __init__(self, process: str, known: list[str]) -> None:
        self.process = process
        super().__init__(f"no process {process!r} (known: {', '.join(sorted(known)) or 'none'})")


class MissingKey(ClientError):
    """The data does not carry the business key of the instance."""


class InvalidKey(MissingKey):
    """The data gives a business key that cannot name an instance (a `/` in it, too long...).

    A kind of `MissingKey`: the data does not carry a usable key, and callers treat both alike.
    """


class AlreadyRunning(ClientError):
    """An instance for this business key is still running."""

    def __init__(self, process: str, key: str) -> None:
        self.process = process
        self.key = key
        self.workflow_id = workflow_id(process, key)
        super().__init__(
            f"{process} already has a running instance for key {key!r} ({self.workflow_id})"
        )


class InstanceNotFound(ClientError):
    """No instance with that id exists."""

    def __init__(self, instance: str) -> None:
        self.instance_id = instance
        super().__init__(f"no instance {instance!r}")


class NotAnAddress(InstanceNotFound):
    """The text cannot name an instance at all."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.args = (
            f"{text!r} is not an instance: give its id, <process>/<business key>/<run> (as "
            "`duly instances` lists it), or <process>/<business key> for the key's latest "
            "instance",
        )

    def __str__(self) -> str:
        return str(self.args[0])


class Address(NamedTuple):
    """What an instance address names.

    Attributes:
        workflow_id: `<process>/<business key>`.
        instance_id: The instance id, or None for the key's latest instance.
    """

    workflow_id: str
    instance_id: str | None


def parse_address(text: str) -> Address:
    """Read an instance address, the one form every command and API route takes.

    `<process>/<business key>/<run>` names one instance; `<process>/<business key>` the key's
    latest one. (An id with more parts was made before keys were refused a `/`: it is taken as
    an instance id, its workflow everything before the last part.)

    Raises:
        NotAnAddress: Fewer than two non-empty parts.
    """
    parts = text.split("/")
    if len(parts) < 2 or not all(parts):
        raise NotAnAddress(text)
    if len(parts) == 2:
        return Address(workflow_id=text, instance_id=None)
    return Address(workflow_id=workflow_of(text, task=False), instance_id=text)


class TaskRejected(ClientError):
    """The instance refused a task completion (or reassignment); nothing changed.

    Attributes:
        task_id: The task.
        reason: Why, for the user to read.
        stale: True when the task is no longer open (completed, cancelled, its instance
            ended): the caller's view is out of date, retrying the same call cannot succeed.
            False when the request itself is wrong (an unknown outcome, a bad field).
    """

    def __init__(
        self, task_id: str, reason: str, *, stale: bool = False, action: str = "completed"
    ) -> None:
        self.task_id = task_id
        self.reason = reason
        self.stale = stale
        super().__init__(f"task {task_id} was not {action}: {reason}")


def business_key(process: CompiledProcess, data: dict[str, Any]) -> str:
    """The business key of the instance that data belongs to.

    Args:
        process: The compiled process.
        data: An event's (or a start request's) data.

    Returns:
        `trigger.key` rendered on the data; for a process without a trigger, `data['key']`.

    Raises:
        MissingKey: The key renders empty (the data lacks the field it names), or a process
            without a trigger got no `key` in its data.
        InvalidKey: The key cannot name an instance (see `check_key`).
    """
    trigger = process.spec.trigger
    if trigger is None:
        key = data.get("key")
        if key is None or not str(key).strip():
            raise MissingKey(
                f"{process.name} has no trigger, so its data must carry the business key "
                'itself: add "key" to the data, e.g. {"key": "ACME-42", ...}'
            )
        return check_key(process.name, str(key).strip(), "data.key")
    try:
        key = render(trigger.key, data).strip()
    except ExpressionError as exc:
        raise MissingKey(f"{process.name}: cannot compute the business key: {exc}") from exc
    if not key:
        raise MissingKey(
            f"{process.name}: the business key {trigger.key!r} is empty on this data: "
            "the data lacks the field it names"
        )
    return check_key(process.name, key, trigger.key)


def check_key(process: str, key: str, source: str) -> str:
    """The key, if it can name an instance unambiguously wherever instance ids go.

    At most `MAX_KEY_CHARS` characters, no control characters, none of `/`, backslash, `?`,
    `#`, `%`, and not `.` or `..`.

    Args:
        process: The process, for the message.
        key: The rendered business key.
        source: Where it came from (the `trigger.key` template), for the message.

    Raises:
        InvalidKey: Which key, and why.
    """
    shown = repr(key if len(key) <= 60 else key[:60] + "...")
    problem = None
    if len(key) > MAX_KEY_CHARS:
        problem = f"it is {len(key):,} characters long; at most {MAX_KEY_CHARS} are taken"
    elif key in (".", ".."):
        problem = "'.' and '..' are not keys"
    elif bad := next((c for c in key if c in KEY_FORBIDDEN), None):
        problem = f"it holds {KEY_FORBIDDEN[bad]}, which instance ids (and URLs) cannot carry"
    elif bad := next((c for c in key if unicodedata.category(c) in ("Cc", "Cs")), None):
        problem = f"it holds the control character U+{ord(bad):04X}"
    if problem is not None:
        raise InvalidKey(
            f"{process}: the business key {shown} (from {source}) cannot name an instance: "
            f"{problem}"
        )
    return key


def workflow_of_task(task_id: str) -> str:
    """The workflow id a task belongs to: its id without `/<run>/<step>/<visit>`.

    Raises:
        TaskRejected: The text is not a task id.
    """
    parts = task_id.rsplit("/", 3)
    if len(parts) != 4 or not all(parts) or not parts[3].isdigit() or "/" not in parts[0]:
        raise TaskRejected(task_id, "not a task id (expected <process>/<key>/<run>/<step>/<visit>)")
    return workflow_of(task_id, task=True)


def starts_on(process: CompiledProcess, event_type: str, data: dict[str, Any]) -> bool:
    """Whether an event starts an instance: its type is a trigger event and `when:` holds.

    A `when:` that cannot be evaluated on the data (a field it names is missing) does not hold.
    """
    trigger = process.spec.trigger
    if trigger is None or event_type not in trigger.types:
        return False
    if trigger.when is None:
        return True
    try:
        return bool(evaluate(trigger.when, data))
    except ExpressionError:
        return False


def listens_to(process: CompiledProcess, event_type: str) -> bool:
    """Whether a live instance of the process reacts to an event type by its definition.

    True when the type is in `on:`, in a wait step's `until:`, a task's `completed_by:` or
    among a clock's starts/stops.
    """
    spec = process.spec
    if event_type in spec.on:
        return True
    if any(isinstance(s, WaitStep) and s.until == event_type for s in spec.steps.values()):
        return True
    if any(isinstance(s, TaskStep) and event_type in s.completed_by for s in spec.steps.values()):
        return True
    return any(
        event_type == clock.starts or event_type in clock.stops for clock in spec.clocks.values()
    )


async def start_instance(
    client: Client,
    definitions: Definitions,
    process: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    task_queue: str | None = None,
    occurred_at: datetime | None = None,
    priority: Priority = Priority.default,
) -> str:
    """Start an instance of a process on data.

    A business key has at most one live instance; once it has ended, the key may start again.

    Args:
        client: A connected Temporal client.
        definitions: The loaded definitions.
        process: The process id.
        data: The instance data (the triggering event's data).
        event_id: The id of the event that started it, if any.
        task_queue: The worker task queue; defaults to `DULY_TASK_QUEUE`.
        occurred_at: When the starting event happened; its clocks count from then.
        priority: Its place in Temporal's queues (`workflows.priority`): `BULK` for a backfill,
            whose start-up then waits behind live work; Temporal's default otherwise.

    Returns:
        The new instance's id (`<process>/<business key>/<run>`).

    Raises:
        UnknownProcess: No such process.
        EventLimitError: The data is over one of duly's limits (`duly.event_limits`).
        MissingKey: The data does not give the business key.
        AlreadyRunning: An instance for the key is still running.
    """
    check_event(data)
    compiled = definitions.processes.get(process)
    if compiled is None:
        raise UnknownProcess(process, list(definitions.processes))
    key = business_key(compiled, data)
    try:
        handle = await client.start_workflow(
            WORKFLOW_NAME,
            ProcessInput(
                definition=compiled,
                business_key=key,
                data=data,
                event_id=event_id,
                occurred_at=occurred_at,
            ),
            id=workflow_id(process, key),
            task_queue=task_queue or get_settings().task_queue,
            result_type=ProcessResult,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            priority=priority,
        )
    except WorkflowAlreadyStartedError:
        raise AlreadyRunning(process, key) from None
    started = instance_id(handle.id, handle.first_execution_run_id or handle.run_id or "")
    log.info("instance started", process=process, instance=started, event_id=event_id)
    return started


async def send_event(
    client: Client,
    definitions: Definitions,
    event: EventInput,
    *,
    task_queue: str | None = None,
    priority: Priority = Priority.default,
) -> list[str]:
    """Deliver an event: start the instances it triggers, signal the live ones it concerns.

    Every process the event starts (see `starts_on`) starts an instance for the key the
    event's data gives; when one is already running for that key, the event goes to it as a
    signal instead. Every other process with a trigger gets the event as a signal on the
    instance for its key, when that instance is running: besides the events named in `on:`,
    `until:` and clocks, data updates (a priority change) reach live instances this way, and the
    workflow ignores what it has no use for. A process without a trigger gets the events it names,
    routed by `data['key']`. Events whose data does not give a process's key skip that process.

    Args:
        client: A connected Temporal client.
        definitions: The loaded definitions.
        event: The event; its id makes redelivery harmless.
        task_queue: The worker task queue for instances it starts; defaults to `DULY_TASK_QUEUE`.
        priority: The priority of the instances it starts (see `start_instance`).

    Returns:
        The ids of the instances started or signalled (`<process>/<business key>/<run>`).

    Raises:
        EventLimitError: The data is over one of duly's limits (`duly.event_limits`).
        MissingKey: The event triggers a process but its data does not give the business key.
    """
    check_event(event.data)  # before Temporal is asked anything
    starts: list[str] = []
    signals: list[str] = []
    for name, process in sorted(definitions.processes.items()):
        trigger = process.spec.trigger
        if starts_on(process, event.type, event.data):
            business_key(process, event.data)  # a trigger without its key fails before any effect
            starts.append(name)
            continue
        if trigger is None and not listens_to(process, event.type):
            continue
        try:
            signals.append(workflow_id(name, business_key(process, event.data)))
        except MissingKey:
            continue  # this event is not about an instance of this process

    touched: list[str] = []
    for name in starts:
        try:
            touched.append(
                await start_instance(
                    client,
                    definitions,
                    name,
                    event.data,
                    event_id=event.id,
                    task_queue=task_queue,
                    occurred_at=event.occurred_at,
                    priority=priority,
                )
            )
        except AlreadyRunning as exc:
            log.info("trigger for a running instance", workflow=exc.workflow_id, event_id=event.id)
            signals.append(exc.workflow_id)
    delivered = await asyncio.gather(*(_signal(client, wid, event) for wid in signals))
    touched.extend(instance for instance in delivered if instance is not None)
    return touched


async def _signal(client: Client, workflow: str, event: EventInput) -> str | None:
    """Signal the running instance of a workflow id; its instance id, or None if none runs."""
    handle = client.get_workflow_handle(workflow)
    try:
        await handle.signal(EVENT_SIGNAL, event)
        first_run_id = (await handle.describe()).raw_info.first_run_id
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:  # no instance, or it has ended
            return None
        raise
    delivered = instance_id(workflow, first_run_id)
    log.info("event delivered", instance=delivered, event_id=event.id, type=event.type)
    return delivered


async def complete_task(
    client: Client,
    task_id: str,
    outcome: str,
    note: str | None = None,
    fields: dict[str, Any] | None = None,
    by: str | None = None,
) -> CompleteTaskResult:
    """Complete an open task with one of its outcomes.

    Args:
        client: A connected Temporal client.
        task_id: `<process>/<key>/<run>/<step>/<visit>`.
        outcome: One of the task's outcomes.
        note: A note from the rep.
        fields: Values of the task's declared fields.
        by: The user completing it.

    Returns:
        The completed task and the step the instance moves to.

    Raises:
        TaskRejected: The instance refused (unknown outcome, task no longer open, bad field),
            or no running instance has the task; nothing changed.
    """
    workflow = workflow_of_task(task_id)
    request = CompleteTaskInput(
        task_id=task_id, outcome=outcome, note=note, fields=fields or {}, by=by
    )
    result: CompleteTaskResult = await _task_update(
        client, workflow, task_id, COMPLETE_TASK_UPDATE, request, CompleteTaskResult, "completed"
    )
    log.info("task completed", task=task_id, outcome=outcome, by=by)
    return result


async def reassign_task(
    client: Client, task_id: str, to: str, by: str | None = None
) -> ReassignTaskResult:
    """Hand an open task to another user (who is told, as by a ladder's `reassign` rung).

    Args:
        client: A connected Temporal client.
        task_id: `<process>/<key>/<run>/<step>/<visit>`.
        to: The user id of the new assignee (an active user).
        by: The user reassigning it.

    Returns:
        The task's assignee before and after.

    Raises:
        TaskRejected: The instance refused (task no longer open, already assigned to `to`,
            `to` is not an active user), or no running instance has the task; nothing changed.
    """
    workflow = workflow_of_task(task_id)
    request = ReassignTaskInput(task_id=task_id, to=to, by=by)
    result: ReassignTaskResult = await _task_update(
        client, workflow, task_id, REASSIGN_TASK_UPDATE, request, ReassignTaskResult, "reassigned"
    )
    log.info("task reassigned", task=task_id, to=to, previous=result.previous, by=by)
    return result


async def _task_update(
    client: Client,
    workflow: str,
    task_id: str,
    update: str,
    request: Any,
    result_type: type[T],
    action: str,
) -> T:
    """Run a task update on the key's current run; a refusal becomes `TaskRejected`."""
    # The key's current run: a task of an earlier run is refused by the validator as not open
    handle = client.get_workflow_handle(workflow)
    try:
        result: T = await handle.execute_update(update, request, result_type=result_type)
        return result
    except WorkflowUpdateFailedError as exc:
        cause = exc.cause
        if isinstance(cause, ApplicationError):
            raise TaskRejected(
                task_id, cause.message, stale=cause.type == TASK_NOT_OPEN, action=action
            ) from None
        raise TaskRejected(task_id, str(cause), action=action) from None
    except WorkflowUpdateRPCTimeoutOrCancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            # the caller was cancelled (Ctrl-C), which the SDK reports as this error: a
            # cancellation, not an instance that did not answer
            raise asyncio.CancelledError from None
        raise ClientError(
            f"task {task_id}: the instance did not answer in time (is a duly worker running?); "
            f"the task may still be {action}, so check it before trying again"
        ) from None
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise TaskRejected(
                task_id, f"no running instance {workflow!r}", stale=True, action=action
            ) from None
        raise TaskRejected(task_id, exc.message, action=action) from None


async def instance_state(client: Client, instance: str) -> InstanceState:
    """The live state of an instance (or its last state, once it has ended).

    The instance's current run answers, however often it has continued as new.

    Args:
        client: A connected Temporal client.
        instance: An instance address (`parse_address`): an instance id
            (`<process>/<key>/<run>`), or `<process>/<key>` for the key's latest instance.

    Raises:
        InstanceNotFound: No such instance.
        ClientError: The instance could not answer.
    """
    address = parse_address(instance)
    try:
        # the workflow id alone reaches its newest run: the current run of the newest instance
        latest = await _query_state(client, address.workflow_id)
    except InstanceNotFound:
        raise InstanceNotFound(instance) from None
    if address.instance_id is None or latest.instance_id == address.instance_id:
        return latest
    # An earlier instance of a key that started again: find its last run (visibility lags a
    # little behind a start, so look a few times)
    run = await _last_run(client, address.workflow_id, address.instance_id)
    return await _query_state(client, address.workflow_id, run_id=run)


async def queued_since(client: Client, instance: str) -> datetime | None:
    """When the workflow task an instance has yet to run was queued; None when it has none.

    The server holds a state query to such an instance until that task has run (a query
    answers after every event that came before it), so during a burst of breaches the query
    waits its turn behind the burst. Describing the instance is answered by the server alone.

    Raises:
        InstanceNotFound: No such instance.
        ClientError: The server could not describe it.
    """
    handle = client.get_workflow_handle(parse_address(instance).workflow_id)
    try:
        described = (await handle.describe()).raw_description
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise InstanceNotFound(instance) from None
        raise ClientError(f"{instance}: {exc.message}") from None
    if not described.HasField("pending_workflow_task"):
        return None
    return described.pending_workflow_task.scheduled_time.ToDatetime(tzinfo=UTC)


async def _last_run(client: Client, workflow: str, instance: str) -> str:
    """The run id of an ended instance's last run: the one that did not continue as new.

    Raises:
        InstanceNotFound: No run of the workflow belongs to the instance.
    """
    quoted = workflow.replace("\\", "\\\\").replace('"', '\\"')
    for attempt in range(VISIBILITY_ATTEMPTS):
        async for execution in client.list_workflows(f'WorkflowId = "{quoted}"'):
            if execution.status is WorkflowExecutionStatus.CONTINUED_AS_NEW:
                continue  # a run its instance left for a newer one: its state is stale
            handle = client.get_workflow_handle(workflow, run_id=execution.run_id)
            # listings leave first_run_id empty; describe fills it in (it differs from the run
            # id after a continue-as-new)
            first_run = (await handle.describe()).raw_info.first_run_id or execution.run_id
            if instance_id(workflow, first_run) == instance:
                return execution.run_id
        if attempt + 1 < VISIBILITY_ATTEMPTS:
            await asyncio.sleep(0.5)
    raise InstanceNotFound(instance)


async def _query_state(client: Client, workflow: str, run_id: str | None = None) -> InstanceState:
    handle = client.get_workflow_handle(workflow, run_id=run_id)
    try:
        state: InstanceState = await handle.query(STATE_QUERY, result_type=InstanceState)
    except RPCError as exc:
        if exc.status is RPCStatusCode.NOT_FOUND:
            raise InstanceNotFound(workflow) from None
        raise ClientError(f"{workflow}: {exc.message}") from None
    except WorkflowQueryFailedError as exc:
        raise ClientError(f"{workflow} could not answer: {exc.message}") from None
    return state
