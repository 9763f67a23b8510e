"""The interpreter behind ProcessWorkflow: walks any compiled process definition.

Deterministic by construction: time comes from `workflow.now()`, every side effect is an
activity, and business-time arithmetic is a pure function of the compiled calendar. SLA clocks are
durable timers raced against completion by a watcher coroutine beside the steps, so a breach is
recorded the moment it happens.

The workflow sandbox passes this module through (`workflows.sandbox`): one copy serves every
instance, where a module the sandbox runs is executed again for each (about 100 kB apiece).
So the sandbox's run-time checks do not reach this code; `tests/test_sandbox.py` checks
statically that it reads no clock, file, environment or randomness, and imports only what
workflows may. `workflows/process.py` holds the workflow class and its handlers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from activities.messages import (
    DEFINITION_NOT_STORED,
    CloseTaskInput,
    EscalateInput,
    EscalateResult,
    FailureAlertInput,
    FinishInstanceInput,
    OpenTaskInput,
    RecordSlaEventsInput,
    RecordStepInput,
    RunActionInput,
    RunActionResult,
    SettlePriorityInput,
    StartInstanceInput,
    StepWrites,
)
from duly.language import business_time, expressions
from duly.language.actions import SET, expand_dotted, signature_of
from duly.language.compiler import CompiledProcess
from duly.language.model import (
    ActionStep,
    DecisionStep,
    EndStep,
    FieldSpec,
    Rung,
    RungAction,
    Step,
    TaskStep,
    WaitStep,
    field_value_problem,
)
from workflows.clock import AlertLevel, Change, SlaClocks, is_late
from workflows.contracts import ProcessContract
from workflows.messages import (
    INVALID_REQUEST,
    TASK_NOT_OPEN,
    ClockState,
    CompleteTaskInput,
    CompleteTaskResult,
    EventInput,
    HistoryEntry,
    InstanceState,
    NextRung,
    OpenTask,
    ProcessInput,
    ProcessResult,
    ReassignTaskInput,
    ReassignTaskResult,
    closed_as,
    instance_id,
)
from workflows.priority import started_in_bulk

SEEN_EVENTS_KEPT = 500
DEFINITIONS_SHARED = 64  # distinct definitions the worker keeps one copy of
PROMPT_SLA_AUDIT = "sla-audit-written-promptly"
"""The patch that writes SLA events when the watcher wakes for them (workflow.patched)."""
RUNGS_BEFORE_AUDIT = "due-rungs-fire-before-the-audit-write"
"""The patch that fires a rung due now before writing the SLA events pending (a breach's own
event, say): the alert no longer waits for that write's round trip; `_fire` writes both."""
STEP_WRITES_RIDE_ALONG = "step-writes-ride-along"
"""The patch that keeps a step's writes (a task's close, facts, SLA events) until the next
activity that runs anyway (`open_task`, `finish_instance`) or the instance waits, and sends them
in one `StepWrites`: one activity per step instead of three to five."""
START_AND_ACTIONS_CARRY_WRITES = "start-and-actions-carry-writes"
"""The patch that lets the instance's start ride on its first activity that writes (instead of
a `start_instance` of its own), lets an outbound action's `run_action` carry the writes before
it (instead of a `record_writes` first), and runs `set` in the workflow: it is pure."""
SLA_EVENTS_WITH_ALERT = "sla-events-written-with-the-alert"
"""The patch that hands a rung's `escalate` the SLA events pending (the breach's, the rung's), to
write in the alert's own transaction: one activity and one workflow task per breach fewer."""
EVERY_CHANGE_AT_START = "every-change-above-from-the-start"
"""The patch that gives an instance every change above from its start, in one marker. Checked
one by one, each change recorded its marker where it first applied, each with the SDK's upsert
of the `TemporalChangeVersion` search attribute: two of them in the middle of a breach's
workflow task. Instances started before this patch still check each change where it applies.
A change added later is checked on its own (`workflow.patched`) until the next such bundle."""


_T = TypeVar("_T")


class _ActionFailed(Exception):
    """An action step's or a rung's action could not run; says why."""


class _Ended(Exception):
    """The instance reached an end (an end step, the loop limit, or a failure)."""

    def __init__(self, status: str, result: str) -> None:
        self.status = status
        self.result = result


_shared: dict[tuple[str, str, str, tuple[object, ...]], CompiledProcess] = {}


def shared(definition: CompiledProcess) -> CompiledProcess:
    """The worker's one copy of `definition`, which every instance running it then holds.

    Each instance's input decodes a copy of its compiled definition (about 40 kB), and a worker
    caches hundreds of instances of the same few processes. A definition is frozen, and one with
    the same content hash, file and source is the same definition, so they share one.
    """
    # A run standing in for other days (the demo's year ahead, a back-test's replay) keeps the
    # published hash, with special hours of its own (`CompiledProcess.standing_in`)
    special = tuple((day, tuple(map(tuple, hours))) for day, hours in
                    definition.calendar.special_hours.items())  # fmt: skip
    key = (definition.hash, definition.file, definition.source, special)
    if (kept := _shared.get(key)) is not None:
        return kept
    if len(_shared) >= DEFINITIONS_SHARED:
        # start again (an instance keeps the copy it holds); clear() is one step for the
        # threads that run workflow tasks side by side, where evicting one entry is not
        _shared.clear()
    return _shared.setdefault(key, definition)


class Interpreter:
    """Runs one instance of a process: its steps, its SLA clocks and their ladders.

    `ProcessWorkflow` is this class with Temporal's handlers: each calls one method here.
    """

    def __init__(self, input: ProcessInput) -> None:
        # the input is the SDK's too (it keeps it for the run): its copy goes, the shared stays
        input.definition = shared(input.definition)
        self.definition = input.definition
        self.spec = input.definition.spec
        self.calendar = input.definition.calendar
        self.state = input.state or InstanceState(
            instance_id=instance_id(
                workflow.info().workflow_id, workflow.info().first_execution_run_id
            ),
            process=self.spec.process,
            version=self.definition.version,
            hash=self.definition.hash,
            business_key=input.business_key,
            data=dict(input.data),
            seen_events=[input.event_id] if input.event_id else [],
        )
        self._completion: CompleteTaskInput | None = None
        self._redirect: tuple[str, str] | None = None  # (event type, target step)
        self._arrived: str | None = None  # the event a `wait ... until:` step got
        self._waiting_for: str | None = None
        self._history_limit = input.history_limit
        self._clock_version = 0
        self._closing = False
        # when the event behind the steps being entered happened, if before now: the first
        # task it leads to opens then (until the instance waits on something)
        self._backdate: datetime | None = None
        self._completed_at: datetime | None = None  # when work logged in the CRM was done
        # the task closed last and how (`completed (lost by ben)`): a late call is told so
        # before the store has the close
        self._last_closed: tuple[str, str] | None = None
        self._flush_lock = asyncio.Lock()
        # what the steps left to write since the last activity (STEP_WRITES_RIDE_ALONG)
        self._pending = StepWrites()
        self._writes_ride_along = False
        self._carried_further = False  # START_AND_ACTIONS_CARRY_WRITES
        self._every_change: bool | None = None  # EVERY_CHANGE_AT_START, once asked
        # who held each open task when its SLA breached: the breach is theirs (not carried by
        # continue-as-new, which never happens while a task is open)
        self._breach_holders: dict[str, str | None] = {}
        self._sla = SlaClocks(self.spec, self.calendar, self.state.clocks)
        # started in bulk: its start-up queued behind live work until its first wait
        self._unsettled = started_in_bulk(workflow.info().priority)

    def _has(self, change: str) -> bool:
        """Whether this instance runs with `change`, one of the patches above.

        The first call comes from `walk`, in the instance's first workflow task: a new instance
        records EVERY_CHANGE_AT_START there, and no marker after it.
        """
        if self._every_change is None:
            self._every_change = workflow.patched(EVERY_CHANGE_AT_START)
        return self._every_change or workflow.patched(change)

    # --- the steps ------------------------------------------------------------------------

    async def walk(self, input: ProcessInput) -> ProcessResult:
        """Walk the flowchart until an end step, the loop limit or a failure."""
        fresh = input.state is None
        self._writes_ride_along = self._has(STEP_WRITES_RIDE_ALONG)
        self._carried_further = self._writes_ride_along and self._has(
            START_AND_ACTIONS_CARRY_WRITES
        )
        if fresh:
            self._backdate = self._occurred(input.occurred_at)
            self.state.started_at = self._backdate or workflow.now()
            await self._record_start()
            self._clock_point("start", self._backdate)
        watcher = asyncio.create_task(self._watch_clocks())
        step_id = self.state.step or self.spec.start
        try:
            while True:
                if self._continue_as_new_due():
                    self.state.step = step_id
                    await self._stop_watcher(watcher)
                    await self._flush_sla_events()
                    await workflow.wait_condition(workflow.all_handlers_finished)
                    workflow.continue_as_new(
                        ProcessInput(
                            definition=self.definition,
                            business_key=self.state.business_key,
                            state=self.state,
                            history_limit=self._history_limit,
                        )
                    )
                step_id = await self._visit(step_id)
                if not self._writes_ride_along:
                    await self._flush_sla_events()
        except _Ended as ended:
            return await self._finish(watcher, ended.status, ended.result)

    async def _record_start(self) -> None:
        """Record the instance, sending its definition's content only if the store lacks it.

        A published definition is stored already: the history then carries it once, in the input.
        """
        record = StartInstanceInput(
            instance_id=self.state.instance_id,
            workflow_id=workflow.info().workflow_id,
            process=self.spec.process,
            version=self.definition.version,
            hash=self.definition.hash,
            business_key=self.state.business_key,
            data=self.state.data,
            started_at=self.state.started_at or workflow.now(),
        )
        if self._carried_further:
            self._pending.start = record  # on the first activity that writes (`_carrying`)
            return
        try:
            await ProcessContract.start_instance.run(record)
        except ActivityError as err:
            if not _definition_not_stored(err):
                raise
            await ProcessContract.start_instance.run(self._with_content(record))

    def _with_content(self, record: StartInstanceInput) -> StartInstanceInput:
        """The start record with its definition's content, for a store that lacks it."""
        return record.model_copy(
            update={
                "source": self.definition.source,
                "compiled_json": self.definition.model_dump_json(by_alias=True),
            }
        )

    def _continue_as_new_due(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > self._history_limit
        )

    async def _visit(self, step_id: str) -> str:
        if self._redirect is not None:
            step_id = self._take_redirect()
        step = self.spec.steps[step_id]
        visit = self.state.visits.get(step_id, 0) + 1
        if visit > (step.max_visits or self.spec.max_visits):
            self._history("loop-limit", step_id, f"step would be visited a {visit}th time")
            raise _Ended("completed", "loop-limit")
        self.state.visits[step_id] = visit
        self.state.step = step_id
        if step.kind in ("action", "wait"):
            self._backdate = None  # the instance now waits on something: time is its own
        self._history("enter", step_id, step.kind)
        self._clock_point(step_id)
        handler = self._handlers[step.kind]
        return await handler(self, step_id, step, visit)

    def _take_redirect(self) -> str:
        assert self._redirect is not None
        event, target = self._redirect
        self._redirect = None
        self._history("redirect", target, f"event {event}")
        return target

    async def _task(self, step_id: str, step: TaskStep, visit: int) -> str:
        received = workflow.now()
        now, self._backdate = self._backdate or received, None
        task_id = f"{self.state.instance_id}/{step_id}/{visit}"
        clock = self._start_step_clock(step_id, step, visit, now)
        opened = await self._carrying(
            lambda writes: ProcessContract.open_task.run(
                OpenTaskInput(
                    task_id=task_id,
                    instance_id=self.state.instance_id,
                    process=self.spec.process,
                    step=step_id,
                    visit=visit,
                    title=self._render(step.title),
                    assign=step.assign,
                    team=self.spec.team,
                    owner=_text(self.state.data.get("owner")),
                    fields={name: spec.type for name, spec in step.fields.items()},
                    outcomes=list(step.outcomes),
                    opened_at=now,
                    due_at=clock.due_at if clock else None,
                    writes=writes,
                )
            )
        )
        self.state.task = OpenTask(
            task_id=task_id,
            step=step_id,
            visit=visit,
            title=self._render(step.title),
            assignee=opened.assignee,
            team=opened.team,
            outcomes=list(step.outcomes),
            fields={name: spec.type for name, spec in step.fields.items()},
            opened_at=now,
            due_at=clock.due_at if clock else None,
        )
        if clock is not None:
            # watched only once the task exists: a rung that came due while open_task was
            # retried (after a crash, say) fires now, about the task and its assignee
            self.state.clocks[clock.name] = clock
        self._clocks_changed()
        await self._settle()
        await workflow.wait_condition(
            lambda: self._completion is not None or self._redirect is not None
        )
        # work logged in the CRM is done when it was logged, not when its event arrived
        closed_at = max(self._completed_at or workflow.now(), now)
        self._completed_at = None
        task = self.state.task
        completion, self._completion = self._completion, None
        values: dict[str, Any] = {}
        if completion is not None:
            outcome, next_step = completion.outcome, step.outcomes[completion.outcome]
            values = _with_defaults(step, completion.fields)
            self._merge(values)
            closed_by = completion.by or task.assignee
            self._history("complete", step_id, f"{outcome} by {closed_by}")
        else:
            outcome, next_step = f"event:{self._redirect[0] if self._redirect else ''}", ""
        self.state.task = None
        if clock is not None:
            # a task cancelled (by an event) before its deadline is not applicable to its SLA
            self._stop_clock(clock, closed_at, cancelled=completion is None)
        if completion is not None:
            # what later steps (a CRM write-back, say) may say: `{{ last_task.outcome }}`; set
            # without _merge, whose retarget would restart the ladder's timer (a new command)
            self.state.data = _deep_merge(
                self.state.data,
                {
                    "last_task": _last_task(
                        step_id, completion, values, closed_by, now, closed_at, clock, self.calendar
                    )
                },
            )
        holder = self._breach_holders.pop(task_id, task.assignee)
        close = CloseTaskInput(
            task_id=task_id,
            status="completed" if completion else "cancelled",
            outcome=outcome,
            note=completion.note if completion else None,
            closed_by=completion.by if completion else None,
            closed_at=closed_at,
        )
        self._last_closed = (task_id, closed_as(close.status, close.outcome, close.closed_by))
        if self._writes_ride_along:
            self._pending.closes.append(close)
        else:
            await ProcessContract.close_task.run(close)
        await self._record(
            step_id,
            step,
            visit,
            opened_at=now,
            closed_at=closed_at,
            outcome=outcome,
            # a breach counts for whoever held the task when it breached, not a later holder
            assignee=holder if clock is not None and clock.met is False else task.assignee,
            team=task.team,
            clock=clock,
            final_assignee=task.assignee
            if clock is not None and clock.met is False and holder != task.assignee
            else None,
            timed=completion is not None,
            received_at=received,
        )
        return next_step or self._take_redirect()

    async def _action(self, step_id: str, step: ActionStep, visit: int) -> str:
        now = workflow.now()
        if not self._carried_further:
            # what came before is in the store before anything is sent outside it
            await self._flush_writes()
        try:
            data = await self._run_action(
                step.do,
                step.with_,
                step_id,
                visit,
                idempotency_key=f"{self.state.instance_id}/{step_id}/{visit}",
                carry=self._carried_further,
            )
        except _ActionFailed as err:
            reason = str(err)
            self._history("action-failed", step_id, reason)
            await self._record(step_id, step, visit, opened_at=now, outcome="error")
            if step.on_error:
                return step.on_error
            await ProcessContract.failure_alert.run(
                FailureAlertInput(
                    alert_key=f"{self.state.instance_id}/{step_id}/{visit}/failure",
                    instance_id=self.state.instance_id,
                    process=self.spec.process,
                    step=step_id,
                    team=self.spec.team,
                    message=f"Action '{step.do}' of step '{step_id}' failed: {reason}",
                    fired_at=workflow.now(),
                ),
            )
            raise _Ended("failed", f"failed:{step_id}") from err
        self._merge(data)
        await self._record(step_id, step, visit, opened_at=now, outcome="done")
        return step.next

    async def _run_action(
        self,
        do: str,
        given: dict[str, Any],
        step: str,
        visit: int,
        *,
        idempotency_key: str,
        carry: bool,
    ) -> dict[str, Any]:
        """Run an action; what it adds to the instance data.

        `set` runs here, as it reaches nothing. Any other action runs in `run_action`, carrying
        the writes left if `carry`: what came before is in the store before anything is sent.

        Raises:
            _ActionFailed: The `with:` cannot be rendered, or the action failed: says why.
        """
        try:
            rendered = self._params(do, given)
            if do == SET and self._carried_further:
                return expand_dotted(rendered)
            done: RunActionResult = await self._carrying(
                lambda writes: ProcessContract.run_action.run(
                    RunActionInput(
                        action=do,
                        instance_id=self.state.instance_id,
                        step=step,
                        visit=visit,
                        params=rendered,
                        data=self.state.data,
                        idempotency_key=idempotency_key,
                        writes=writes,
                    )
                ),
                carry=carry,
            )
        except ActivityError as err:
            raise _ActionFailed(str(err.cause or err)) from err
        except expressions.ExpressionError as err:
            # a `with:` that cannot be rendered fails the action as a failed send would
            raise _ActionFailed(str(err)) from err
        except ValueError as err:  # a `set` whose keys disagree, as run_action would say
            raise _ActionFailed(f"action '{do}': {err}") from err
        return done.data

    def _params(self, do: str, with_: dict[str, Any]) -> dict[str, Any]:
        """An action's `with:` rendered on the instance data (an email's template filled in)."""
        action = signature_of(do)
        given = dict(with_)
        url_param = action.url_param
        url = given.pop(url_param, None) if url_param else None
        params: dict[str, Any] = expressions.render_value(given, self.state.data)
        if url_param and isinstance(url, str):  # data goes into the path and query only
            params[url_param] = expressions.render_url(url, self.state.data)
        if action.templated:  # `template` names one of definitions/templates/ only here
            template = self.definition.templates.get(str(params.pop("template", "")))
            if template is not None:
                params.setdefault("subject", self._render(template.subject))
                params.setdefault("body", self._render(template.body))
        return params

    async def _wait(self, step_id: str, step: WaitStep, visit: int) -> str:
        now = workflow.now()
        duration = step.for_ or step.timeout
        assert duration is not None  # the model requires one of them
        deadline = business_time.add(self.calendar, now, duration)
        self._waiting_for = step.until
        self.state.wake_at, self.state.wake_event = deadline, step.until  # for `state` readers
        await self._flush_writes()
        await self._settle()
        try:
            arrived = await self._sleep_until(
                deadline, lambda: self._arrived is not None or self._redirect is not None
            )
        finally:
            self._waiting_for = None
            self.state.wake_at = self.state.wake_event = None
        event, self._arrived = self._arrived, None
        outcome = event or ("timeout" if step.until else "elapsed")
        await self._record(step_id, step, visit, opened_at=now, outcome=outcome)
        if arrived and event is None:
            return self._take_redirect()
        if step.until and event is None:
            assert step.on_timeout is not None
            return step.on_timeout
        return step.next

    async def _decision(self, step_id: str, step: DecisionStep, visit: int) -> str:
        now = workflow.now()
        chosen, label = step.otherwise, "otherwise"
        for branch in step.branches:
            try:
                holds = bool(expressions.evaluate(branch.when, self.state.data))
            except expressions.ExpressionError as err:
                self._history("expression-error", step_id, str(err))
                holds = False
            if holds:
                chosen, label = branch.next, branch.when
                break
        await self._record(step_id, step, visit, opened_at=now, outcome=label)
        return chosen

    async def _end(self, step_id: str, step: EndStep, visit: int) -> str:
        await self._record(step_id, step, visit, opened_at=workflow.now(), outcome=step.result)
        raise _Ended("completed", step.result or step_id)

    _handlers: dict[str, Callable[..., Awaitable[str]]] = {
        "task": _task,
        "action": _action,
        "wait": _wait,
        "decision": _decision,
        "end": _end,
    }

    async def _finish(self, watcher: asyncio.Task[None], status: str, result: str) -> ProcessResult:
        now = workflow.now()
        for clock in self.state.clocks.values():
            if clock.status != "stopped":
                self._stop_clock(clock, now)
        self.state.status = "failed" if status == "failed" else "completed"
        self.state.result = result
        self.state.step = None
        await self._stop_watcher(watcher)
        if not self._writes_ride_along:
            await self._flush_sla_events()
        await self._carrying(
            lambda writes: ProcessContract.finish_instance.run(
                FinishInstanceInput(
                    instance_id=self.state.instance_id,
                    status=self.state.status,
                    result=result,
                    data=self.state.data,
                    ended_at=now,
                    writes=writes,
                )
            )
        )
        await workflow.wait_condition(workflow.all_handlers_finished)
        return ProcessResult(status=self.state.status, result=result, data=self.state.data)

    async def _record(
        self,
        step_id: str,
        step: Step,
        visit: int,
        *,
        opened_at: datetime,
        closed_at: datetime | None = None,
        outcome: str | None = None,
        assignee: str | None = None,
        team: str | None = None,
        clock: ClockState | None = None,
        final_assignee: str | None = None,
        timed: bool = True,
        received_at: datetime | None = None,
    ) -> None:
        closed_at = closed_at or workflow.now()
        fact = RecordStepInput(
            instance_id=self.state.instance_id,
            process=self.spec.process,
            version=self.definition.version,
            step=step_id,
            kind=step.kind,
            visit=visit,
            assignee=assignee,
            team=team,
            opened_at=opened_at,
            due_at=clock.due_at if clock else None,
            closed_at=closed_at,
            outcome=outcome,
            sla_met=clock.met if clock else None,
            breached_at=clock.breached_at if clock else None,
            highest_rung=clock.rungs_done if clock else None,
            # a cancelled task was not done: it has no time to complete
            business_seconds=business_time.elapsed(
                self.calendar, opened_at, closed_at
            ).total_seconds()
            if timed
            else None,
            final_assignee=final_assignee,
            received_at=received_at or opened_at,
            late_arriving=is_late(clock, clock.breached_at) if clock is not None else None,
            stage=_stage(step, outcome),
        )
        if self._writes_ride_along:
            self._pending.steps.append(fact)
        else:
            await ProcessContract.record_step.run(fact)

    # --- messages from outside ------------------------------------------------------------

    async def complete(self, input: CompleteTaskInput) -> CompleteTaskResult:
        """Complete the open task with an outcome; validated first: a bad call changes nothing."""
        task = self.state.task
        assert task is not None  # the validator guarantees it
        step = self.spec.steps[task.step]
        assert isinstance(step, TaskStep)
        self._completion = input
        return CompleteTaskResult(
            task_id=input.task_id, outcome=input.outcome, next_step=step.outcomes[input.outcome]
        )

    def check_completion(self, input: CompleteTaskInput) -> None:
        """Refuse a completion of a task not open, with a wrong outcome or a bad field."""
        task = self._open_task(input.task_id)
        if input.outcome not in task.outcomes:
            raise ApplicationError(
                f"'{input.outcome}' is not an outcome of step '{task.step}'; "
                f"expected one of {', '.join(task.outcomes)}",
                type=INVALID_REQUEST,
            )
        step = self.spec.steps[task.step]
        declared = step.fields if isinstance(step, TaskStep) else {}
        problems = [
            problem
            for name, spec in declared.items()
            if (problem := _field_problem(name, spec, input.fields, input.outcome)) is not None
        ]
        unknown = sorted(set(input.fields) - set(task.fields))
        if unknown:
            problems.append(f"step '{task.step}' declares no field {', '.join(unknown)}")
        if problems:
            raise ApplicationError("; ".join(problems), type=INVALID_REQUEST)

    def _open_task(self, task_id: str) -> OpenTask:
        """The open task if it is `task_id` and nothing is closing it; else a rejection."""
        task = self.state.task
        closed = self._closed(task_id)
        if closed is not None:  # in the store's words, which may not have the close yet
            raise ApplicationError(
                f"task {task_id} is {closed}, no longer open", type=TASK_NOT_OPEN
            )
        if task is None or self._completion is not None or self._redirect is not None:
            raise ApplicationError(
                f"task {task_id} is not open: instance "
                f"{self.state.instance_id} has no open task right now",
                type=TASK_NOT_OPEN,
            )
        if task_id != task.task_id:
            raise ApplicationError(
                f"task {task_id} is not open; the open task is {task.task_id}", type=TASK_NOT_OPEN
            )
        return task

    def _closed(self, task_id: str) -> str | None:
        """How task `task_id` was closed, if it is the one being closed or closed last."""
        task, completion = self.state.task, self._completion
        if task is not None and task.task_id == task_id:
            if completion is not None:
                return closed_as("completed", completion.outcome, completion.by)
            return "cancelled" if self._redirect is not None else None
        if self._last_closed is not None and self._last_closed[0] == task_id:
            return self._last_closed[1]
        return None

    async def reassign(self, input: ReassignTaskInput) -> ReassignTaskResult:
        """Hand the open task to another user; validated first: a bad call changes nothing.

        The Task row changes through the same activity as a ladder's `reassign` rung, which
        also alerts the new assignee, once however often it is retried.
        """
        task = self._open_task(input.task_id)
        previous = task.assignee
        now = workflow.now()
        try:
            result: EscalateResult = await ProcessContract.escalate.run(
                EscalateInput(
                    alert_key=f"{task.task_id}/reassign/{workflow.uuid4().hex}",
                    instance_id=self.state.instance_id,
                    process=self.spec.process,
                    step=task.step,
                    clock=f"step:{task.step}",
                    rung=-1,  # not a rung of the ladder: a person's decision
                    at_percent=0,
                    level="escalation",
                    reassign=f"user:{input.to}",
                    task_id=task.task_id,
                    assignee=previous,
                    team=task.team,
                    due_at=task.due_at,
                    fired_at=now,
                    title=task.title,
                    by=input.by,
                ),
            )
        except ActivityError as err:
            cause = err.cause
            reason = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
            # the caller prefixes "task ... was not reassigned:"
            raise ApplicationError(reason, type=INVALID_REQUEST) from err
        if self.state.task is not task or result.assignee != input.to:
            raise ApplicationError("it closed before it could be reassigned", type=TASK_NOT_OPEN)
        task.assignee = result.assignee
        self._history("reassign", task.step, f"to {input.to} (was {previous}) by {input.by}")
        return ReassignTaskResult(task_id=task.task_id, assignee=input.to, previous=previous)

    def check_reassign(self, input: ReassignTaskInput) -> None:
        """Refuse a reassignment of a task not open, or to nobody, or to its assignee."""
        task = self._open_task(input.task_id)
        if not input.to.strip():
            raise ApplicationError("name the user to hand the task to", type=INVALID_REQUEST)
        if input.to == task.assignee:
            raise ApplicationError(
                f"task {input.task_id} is already assigned to {input.to}", type=INVALID_REQUEST
            )

    def receive(self, input: EventInput) -> None:
        """An inbound event for this instance's business key."""
        if input.id in self.state.seen_events:
            return
        self.state.seen_events = [*self.state.seen_events[-SEEN_EVENTS_KEPT + 1 :], input.id]
        self._merge(input.data)
        self._history("event", self.state.step, input.type)
        occurred = self._occurred(input.occurred_at)
        if self._completes_task(input, occurred):
            pass
        elif self._waiting_for == input.type and self._arrived is None:
            self._arrived = input.type
        elif input.type in self.spec.on and self.state.status == "running":
            self._redirect = (input.type, self.spec.on[input.type])
        self._clock_point(input.type, occurred)
        self._retarget()

    def _completes_task(self, input: EventInput, occurred: datetime | None) -> bool:
        """Work logged in the CRM: an event the open task's `completed_by` names completes it."""
        task = self.state.task
        if task is None or self._completion is not None or self._redirect is not None:
            return False
        step = self.spec.steps[task.step]
        if not isinstance(step, TaskStep) or input.type not in step.completed_by:
            return False
        rule = step.completed_by[input.type]
        by = _text(_render_on(rule.by, input.data))
        note = _text(_render_on(rule.note, input.data)) if rule.note else None
        self._completion = CompleteTaskInput(
            task_id=task.task_id, outcome=rule.outcome, note=note, by=by
        )
        self._completed_at = occurred
        self._history("logged-in-crm", task.step, f"{input.type}: {rule.outcome}")
        return True

    def _occurred(self, at: datetime | None) -> datetime | None:
        """An event's occurred time if it is before now (a future one counts as now)."""
        if at is None:
            return None
        if at.tzinfo is None:  # refused at the door; kept safe for events sent around it
            at = at.replace(tzinfo=UTC)
        return at if at < workflow.now() else None

    # --- SLA clocks (their arithmetic: workflows/clock.py) ---------------------------------

    def _start_step_clock(
        self, step_id: str, step: TaskStep, visit: int, now: datetime
    ) -> ClockState | None:
        """A task's own SLA clock, counting from `now`; the caller hands it to the watcher."""
        clock, change = self._sla.start_step(
            step_id, step, visit, at=now, now=workflow.now(), data=self.state.data
        )
        self._keep(change, step_id)
        return clock

    def _clock_point(self, point: str, at: datetime | None = None) -> None:
        """A step was entered or an event arrived: start, stop, pause or resume clocks.

        `at` is when the event happened, if earlier than now: clocks start and stop then.
        """
        now = workflow.now()
        step = self.state.step
        self._keep(
            self._sla.at_point(point, at=at or now, now=now, step=step, data=self.state.data),
            step,
        )
        self._clocks_changed()

    def _stop_clock(self, clock: ClockState, now: datetime, *, cancelled: bool = False) -> None:
        """Stop a clock at `now`: met, breached, or (`cancelled`) not applicable."""
        self._keep(self._sla.stop(clock, now, now=workflow.now(), cancelled=cancelled))
        self._clocks_changed()

    def _retarget(self) -> None:
        """Data behind a `by:` target changed: keep the time counted, recompute due and rungs."""
        self._keep(self._sla.retarget(now=workflow.now(), data=self.state.data))
        self._clocks_changed()

    def _keep(self, change: Change, step: str | None = None) -> None:
        """Keep what a clock change produced: its SLA events, and why a clock did not start."""
        self.state.sla_events.extend(change.events)
        for detail in change.no_target:
            self._history("no-sla-target", step, detail)

    def _clocks_changed(self) -> None:
        self._clock_version += 1
        self.state.next_rung = self._sla.next_point()

    async def _watch_clocks(self) -> None:
        """Fire each rung once, in order, at its instant; recompute when clocks change.

        SLA events (a clock's start, pause, stop...) are written as soon as the watcher wakes
        for them, so the audit reaches the store within moments of what it records rather
        than when the step ends. Histories from before that did not write them here.
        """
        while not self._closing:
            point = self._sla.next_point()
            pending = len(self.state.sla_events) > self.state.sla_events_written
            if pending and self._has(PROMPT_SLA_AUDIT) and not self._rung_due(point):
                await self._flush_sla_events()
                continue
            self.state.next_rung = point
            changed = self._change_since(self._clock_version)
            if point is None:
                await workflow.wait_condition(changed)
                continue
            delay = (point.at - workflow.now()).total_seconds()
            if delay > 0:
                try:
                    await workflow.wait_condition(changed, timeout=delay)
                    continue
                except TimeoutError:
                    pass
            if not changed():
                await self._fire(point)

    def _rung_due(self, point: NextRung | None) -> bool:
        """`point` is a rung (not a bare breach) due now: it goes first, ahead of the audit."""
        due = point is not None and point.rung >= 0 and point.at <= workflow.now()
        return due and self._has(RUNGS_BEFORE_AUDIT)

    def _change_since(self, version: int) -> Callable[[], bool]:
        return lambda: self._clock_version != version or self._closing

    async def _fire(self, point: NextRung) -> None:
        now = workflow.now()
        fired = self._sla.fire(point, now=now)
        self.state.sla_events.extend(fired.events)
        clock, rung, level = fired.clock, fired.rung, fired.level
        if rung is None:
            task = self.state.task
            if task is not None and clock.step == task.step and clock.visit == task.visit:
                self._breach_holders.setdefault(task.task_id, task.assignee)
            self._clocks_changed()
            return
        self._clocks_changed()
        task = self.state.task
        on_task = task is not None and (clock.step is None or task.step == clock.step)
        actions = rung.actions
        for number, action in enumerate(actions):
            # the first action keeps the key a one-action rung always had
            key = f"{self.state.instance_id}/{clock.name}/{clock.visit}/{point.rung}"
            key += f".{number}" if number else ""  # `<rung>.<n>`: still names the rung
            try:
                if action.notify is not None or action.reassign is not None:
                    result = await self._escalate(
                        clock, point, rung, level, now, task, on_task, action=action, key=key
                    )
                    if action.reassign and task is not None and self.state.task is task and on_task:
                        task.assignee = result.assignee
                        self._history("reassign", task.step, f"to {result.assignee}")
                else:
                    await self._rung_action(clock, action, key)
            except (ActivityError, expressions.ExpressionError, _ActionFailed) as err:
                # a rung that cannot run (its recipient left the org, say) is recorded and
                # skipped: the ladder goes on, and the breach itself is already on record
                cause = err.cause if isinstance(err, ActivityError) else err
                self._history("escalation-failed", clock.step, f"rung {point.rung + 1}: {cause}")
                if len(actions) == 1:
                    return
        await self._flush_sla_events()

    async def _rung_action(self, clock: ClockState, action: RungAction, key: str) -> None:
        """A rung's `set:` or `action:`: run as an action step's would be, its data merged."""
        call = action.call
        assert call is not None  # the caller runs notify and reassign through `escalate`
        do, given = call
        step = clock.step or self.state.step or ""
        # the walk wrote its steps before it waited; what the ladder adds, `_fire` writes after
        data = await self._run_action(
            do, given, step, clock.visit, idempotency_key=key, carry=False
        )
        self._merge(data)

    async def _escalate(
        self,
        clock: ClockState,
        point: NextRung,
        rung: Rung,
        level: AlertLevel,
        now: datetime,
        task: OpenTask | None,
        on_task: bool,
        *,
        action: RungAction,
        key: str,
    ) -> EscalateResult:
        start = self.state.sla_events_written
        events = self.state.sla_events[start:] if self._has(SLA_EVENTS_WITH_ALERT) else []
        result: EscalateResult = await ProcessContract.escalate.run(
            EscalateInput(
                alert_key=key,
                instance_id=self.state.instance_id,
                process=self.spec.process,
                step=clock.step or self.state.step,
                clock=clock.name,
                rung=point.rung,
                at_percent=rung.at * 100,
                level=level,
                notify=action.notify,
                reassign=action.reassign if on_task else None,
                task_id=task.task_id if task and on_task else None,
                assignee=task.assignee if task and on_task else None,
                team=task.team if task and on_task else self.spec.team,
                due_at=clock.due_at,
                fired_at=now,
                title=task.title if task and on_task else self.spec.title,
                sla_events=events,
                first_seq=start,
            ),
        )
        self._written(start + len(events))
        return result

    async def _settle(self) -> None:
        """An instance started in bulk waits for the first time: from now on it is live work."""
        if self._unsettled:
            self._unsettled = False
            await ProcessContract.settle_priority.run(
                SettlePriorityInput(workflow_id=workflow.info().workflow_id)
            )

    async def _stop_watcher(self, watcher: asyncio.Task[None]) -> None:
        self._closing = True
        await watcher

    # --- bookkeeping ----------------------------------------------------------------------

    def _take_writes(self) -> StepWrites | None:
        """What is left to write, with the SLA events not yet written, for an activity to carry.

        The events count as written from here: the activity carrying them retries until the
        store takes them, and neither the watcher nor a rung's `escalate` sends them again.
        """
        if not self._writes_ride_along:
            return None
        writes, self._pending = self._pending, StepWrites()
        start = self.state.sla_events_written
        events = self.state.sla_events[start:]
        if events:
            writes.sla_events = RecordSlaEventsInput(
                instance_id=self.state.instance_id, first_seq=start, events=events
            )
            self._written(start + len(events))
        return (
            writes if writes.start or writes.closes or writes.steps or writes.sla_events else None
        )

    async def _carrying(
        self, send: Callable[[StepWrites | None], Awaitable[_T]], *, carry: bool = True
    ) -> _T:
        """Run an activity that carries the writes left (none unless `carry`); its result.

        The instance's start, when it is among them, may meet a store that lacks the
        definition: then the activity runs again with the definition's content.
        """
        writes = self._take_writes() if carry else None
        try:
            return await send(writes)
        except ActivityError as err:
            if writes is None or writes.start is None or not _definition_not_stored(err):
                raise
            writes.start = self._with_content(writes.start)
            return await send(writes)

    async def _flush_writes(self) -> None:
        """Write what is left now, in an activity of its own: the instance waits next."""

        async def record(writes: StepWrites | None) -> None:
            if writes is not None:
                await ProcessContract.record_writes.run(writes)

        await self._carrying(record)

    async def _flush_sla_events(self) -> None:
        if self._writes_ride_along:
            await self._flush_writes()
            return
        async with self._flush_lock:
            start = self.state.sla_events_written
            pending = self.state.sla_events[start:]
            if not pending:
                return
            await ProcessContract.record_sla_events.run(
                RecordSlaEventsInput(
                    instance_id=self.state.instance_id, first_seq=start, events=pending
                ),
            )
            self._written(start + len(pending))

    def _written(self, upto: int) -> None:
        """SLA events before `upto` are in the store (a rung's escalate may have got further)."""
        self.state.sla_events_written = max(self.state.sla_events_written, upto)

    def _history(self, kind: str, step: str | None, detail: str = "") -> None:
        self.state.history.append(
            HistoryEntry(at=workflow.now(), kind=kind, step=step, detail=detail)
        )

    def _merge(self, update: dict[str, Any]) -> None:
        if update:
            self.state.data = _deep_merge(self.state.data, update)
            self._retarget()

    def _render(self, text: str) -> str:
        try:
            return expressions.render(text, self.state.data)
        except expressions.ExpressionError:
            return text

    async def _sleep_until(self, deadline: datetime, done: Callable[[], bool]) -> bool:
        """Wait for `done` until `deadline`; True when `done` came first."""
        delay = (deadline - workflow.now()).total_seconds()
        if done():
            return True
        if delay <= 0:
            return False
        try:
            await workflow.wait_condition(done, timeout=delay)
            return True
        except TimeoutError:
            return False


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _render_on(template: str, data: dict[str, Any]) -> str:
    try:
        return expressions.render(template, data)
    except expressions.ExpressionError:
        return ""


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _field_problem(name: str, spec: FieldSpec, values: dict[str, Any], outcome: str) -> str | None:
    """Why a declared task field's value is missing (for this outcome) or does not fit, or None."""
    if name not in values or values[name] is None:
        if spec.default is not None or not spec.required_for(outcome):
            return None
        needed = "" if spec.required is True else f" for outcome '{outcome}'"
        return f"field '{name}' ({spec.type}) is required{needed}"
    return field_value_problem(name, spec, values[name])


def _stage(step: Step, outcome: str | None) -> str | None:
    """The stage a visit puts its record in: its outcome's (`outcome_stages`), else the step's."""
    if isinstance(step, TaskStep) and outcome in step.outcome_stages:
        return step.outcome_stages[outcome]
    return step.stage


def _with_defaults(step: TaskStep, given: dict[str, Any]) -> dict[str, Any]:
    """The values a rep gave, with each absent field's default filled in."""
    values = dict(given)
    for name, spec in step.fields.items():
        if values.get(name) is None and spec.default is not None:
            values[name] = spec.default
    return values


def _last_task(
    step_id: str,
    completion: CompleteTaskInput,
    values: dict[str, Any],
    by: str | None,
    opened_at: datetime,
    closed_at: datetime,
    clock: ClockState | None,
    calendar: business_time.BusinessCalendar,
) -> dict[str, Any]:
    """The completed task as later steps' templates and conditions see it: `last_task.*`."""
    sla = "" if clock is None else {True: "met", False: "breached", None: ""}[clock.met]
    return {
        "step": step_id,
        "outcome": completion.outcome,
        "note": completion.note or "",
        "by": by or "",
        "fields": values,
        "opened_at": opened_at.isoformat(),
        "closed_at": closed_at.isoformat(),
        "sla": sla,
        "due_at": clock.due_at.isoformat() if clock is not None and clock.due_at else "",
        "business_seconds": business_time.elapsed(calendar, opened_at, closed_at).total_seconds(),
    }


def _definition_not_stored(err: ActivityError) -> bool:
    """The activity found the store without the instance's definition (`start_instance`)."""
    cause = err.cause
    return isinstance(cause, ApplicationError) and cause.type == DEFINITION_NOT_STORED
