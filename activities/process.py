"""The process workflow's activities: every write to duly's database, and the actions.

Each method is a sync activity (the worker runs them on a thread pool) that opens one session,
does its work in one transaction, and is idempotent under retries: what it writes is keyed by
the natural key in its input, inserted only if absent, so a second attempt finds the first
attempt's row instead of writing another. Business failures (an assignment rule naming nobody)
are non-retryable `ApplicationError`s with a message that says what to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, tzinfo

import structlog
from google.protobuf.field_mask_pb2 import FieldMask
from sqlalchemy import Table, bindparam, update
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select
from temporalio import activity
from temporalio.api.common.v1 import Priority as PriorityMessage
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflow.v1 import WorkflowExecutionOptions
from temporalio.api.workflowservice.v1 import UpdateWorkflowExecutionOptionsRequest
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from activities import actions
from activities.messages import (
    DEFINITION_NOT_STORED,
    CloseTaskInput,
    EscalateInput,
    EscalateResult,
    FailureAlertInput,
    FinishInstanceInput,
    OpenTaskInput,
    OpenTaskResult,
    RecordSlaEventsInput,
    RecordStepInput,
    RunActionInput,
    RunActionResult,
    SettlePriorityInput,
    SlaEvent,
    StartInstanceInput,
    StepWrites,
)
from duly import metrics, timefmt
from duly.metrics import count_on_commit
from duly.notify import notify_alert, notify_task_assigned
from duly.notify.messages import instance_url, load_record, queue_message, record_fields
from duly.notify.model import Action, Fact, Message
from duly.settings import Settings, get_settings
from duly.store.assignment import (
    AssignmentError,
    is_active_user,
    least_loaded,
    manager_of,
    manager_of_team,
    next_in_rotation,
    require_user,
    skip_level_of,
    team_members,
    teams_of,
    users_with_role,
)
from duly.store.crud import (
    VersionConflict,
    insert_if_absent,
    insert_values_if_absent,
    store_definition,
)
from duly.store.db import SessionFactory, write_session
from duly.store.models import Alert, Instance, SlaEventRow, StepFact, Task, User
from duly.store.parsed import definition_zone, is_stored_whole
from duly.store.rollup import add_fact
from workflows.contracts import ProcessContract
from workflows.priority import LIVE_KEY

_log = structlog.get_logger(__name__)

_STEP_FACTS: Table = StepFact.__table__  # type: ignore[attr-defined]
_SLA_EVENTS: Table = SlaEventRow.__table__  # type: ignore[attr-defined]
_TASKS: Table = Task.__table__  # type: ignore[attr-defined]
# read by every task close and open: built once, read as plain rows rather than ORM objects
_CLOSING = (
    sa_select(
        _TASKS.c.instance_id,
        _TASKS.c.process,
        _TASKS.c.step,
        _TASKS.c.assignee,
        _TASKS.c.status,
        _TASKS.c.due_at,
    )
    .where(_TASKS.c.id == bindparam("id"))
    .with_for_update()
)
_OPENED = sa_select(_TASKS.c.assignee, _TASKS.c.team).where(_TASKS.c.id == bindparam("id"))
_CLOSE = update(_TASKS).where(_TASKS.c.id == bindparam("task"))  # the closing columns as params
_ALERTS: Table = Alert.__table__  # type: ignore[attr-defined]
_INSTANCES: Table = Instance.__table__  # type: ignore[attr-defined]
_FINISH = update(_INSTANCES).where(
    _INSTANCES.c.id == bindparam("instance"), _INSTANCES.c.status == "running"
)  # the ending's columns as params
_RESOLVE = update(_ALERTS).where(
    _ALERTS.c.task_id == bindparam("task"), _ALERTS.c.resolved_at.is_(None)
)  # the resolution's columns as params

ASSIGN_FORMS = "owner, user:<id>, round-robin:<team> or least-loaded:<team>"


class _AlreadyOpened(Exception):
    """Another attempt opened the task first; roll back this attempt's rotation step."""


def _assignment_failure(exc: AssignmentError) -> ApplicationError:
    return ApplicationError(str(exc), type="AssignmentError", non_retryable=True)


def _missing(what: str, key: str, hint: str) -> ApplicationError:
    return ApplicationError(
        f"no {what} '{key}' is recorded; {hint}", type="NotFound", non_retryable=True
    )


class ProcessActivities:
    """The activities of `ProcessWorkflow`, holding their database and settings.

    Args:
        sessions: Makes one session per activity call (`duly.store.db.session_factory`).
        settings: duly's settings (SMTP for the `email` action); read from the environment
            when not given.
        handlers: The actions steps may `do`, by name; `actions.ACTION_HANDLERS` when not
            given (a simulation's take its webhooks and CRM writes as accepted, unsent).
    """

    def __init__(
        self,
        sessions: SessionFactory,
        settings: Settings | None = None,
        handlers: Mapping[str, actions.ActionHandler] | None = None,
    ) -> None:
        self.sessions = sessions
        self.settings = settings or get_settings()
        self.handlers = actions.ACTION_HANDLERS if handlers is None else handlers

    # --- instances ---------------------------------------------------------------------------

    @activity.defn(name=ProcessContract.start_instance.name)
    def start_instance(self, input: StartInstanceInput) -> None:
        """Record a new instance and the definition it is pinned to, once."""
        with write_session(self.sessions) as session:
            _start_instance(session, input)

    @activity.defn(name=ProcessContract.finish_instance.name)
    def finish_instance(self, input: FinishInstanceInput) -> None:
        """Mark a running instance completed or failed; a finished one is left as it is."""
        log = _log.bind(instance=input.instance_id)
        with write_session(self.sessions) as session:
            _write(session, input.writes)
            finished = session.exec(
                _FINISH,
                params={
                    "instance": input.instance_id,
                    "status": input.status,
                    "result": input.result,
                    "data": input.data,
                    "ended_at": input.ended_at,
                },
            )
            if finished.rowcount == 0:
                instance = session.get(Instance, input.instance_id)
                if instance is None:
                    raise _missing("instance", input.instance_id, "its start must be written first")
                log.info("instance_already_finished", status=instance.status)
                return
        log.info("instance_finished", status=input.status, result=input.result)

    # --- tasks -------------------------------------------------------------------------------

    @activity.defn(name=ProcessContract.open_task.name)
    def open_task(self, input: OpenTaskInput) -> OpenTaskResult:
        """Open a step visit's task and choose its assignee, once: a retry never picks again.

        The assignee's notification (`duly.notify`) is queued in the same transaction.
        """
        log = _log.bind(instance=input.instance_id, step=input.step, task=input.task_id)
        try:
            with write_session(self.sessions) as session:
                # the instance's start and the last task's close first: least-loaded counts
                # that task closed
                _start_and_close(session, input.writes)
                existing = session.connection().execute(_OPENED, {"id": input.task_id}).first()
                if existing is not None:
                    _record_steps_and_events(session, input.writes)
                    log.info("task_already_opened", assignee=existing.assignee)
                    return OpenTaskResult(
                        task_id=input.task_id, assignee=existing.assignee, team=existing.team
                    )
                assignee, team = self._assign(
                    session, input.assign, owner=input.owner, team=input.team
                )
                task = Task(
                    id=input.task_id,
                    instance_id=input.instance_id,
                    process=input.process,
                    step=input.step,
                    visit=input.visit,
                    title=input.title,
                    assignee=assignee,
                    team=team,
                    fields=input.fields,
                    outcomes=input.outcomes,
                    opened_at=input.opened_at,
                    due_at=input.due_at,
                )
                if not insert_if_absent(session=session, row=task):
                    raise _AlreadyOpened
                count_on_commit(session, metrics.TASKS_OPENED.labels(process=input.process))
                # Queued with the task: both commit, or neither does and a retry does both
                notify_task_assigned(session=session, task=task, settings=self.settings)
                # last: the weekly rollup row a fact counts in stays locked only to the commit
                _record_steps_and_events(session, input.writes)
        except AssignmentError as exc:
            log.error("task_not_assigned", problem=str(exc))
            if input.writes is not None:  # what the steps before did stands, task or no task
                self.record_writes(input.writes)
            raise _assignment_failure(exc) from exc
        except _AlreadyOpened:
            # PostgreSQL only: a concurrent attempt won; report what it chose
            with self.sessions() as session:
                task = session.get_one(Task, input.task_id)
        log.info("task_opened", assignee=task.assignee, team=task.team)
        return OpenTaskResult(task_id=task.id, assignee=task.assignee, team=task.team)

    def _assign(
        self,
        session: Session,
        rule: str,
        *,
        owner: str | None,
        team: str | None,
        exclude: str | None = None,
    ) -> tuple[str, str | None]:
        """The assignee chosen by an `assign:` rule, and the team the task counts for."""
        kind, _, name = rule.partition(":")
        if kind == "owner" and not name:
            if owner and is_active_user(session=session, user_id=owner):
                return owner, _team_for(session, owner, team)
            if team is None:
                raise AssignmentError(
                    f"the owner {owner!r} is not an active user and the process names no team "
                    "to fall back on; give the process a 'team:' or send a known owner"
                )
            _log.info("owner_unknown_round_robin", owner=owner, team=team)
            return next_in_rotation(session=session, team=team, exclude=exclude), team
        if kind == "user" and name:
            return require_user(session=session, user_id=name), _team_for(session, name, team)
        if kind == "round-robin" and name:
            return next_in_rotation(session=session, team=name, exclude=exclude), name
        if kind == "least-loaded" and name:
            return least_loaded(session=session, team=name, exclude=exclude), name
        raise AssignmentError(f"'{rule}' is not an assignment rule; expected {ASSIGN_FORMS}")

    @activity.defn(name=ProcessContract.close_task.name)
    def close_task(self, input: CloseTaskInput) -> None:
        """Complete or cancel an open task; closing a closed task changes nothing."""
        with write_session(self.sessions) as session:
            _close_task(session, input)

    @activity.defn(name=ProcessContract.settle_priority.name)
    async def settle_priority(self, input: SettlePriorityInput) -> None:
        """Give an instance started in bulk the live priority: its start-up is over.

        Setting the same priority again changes nothing, so a retry is harmless.
        """
        client = activity.client()
        request = UpdateWorkflowExecutionOptionsRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=input.workflow_id),
            workflow_execution_options=WorkflowExecutionOptions(
                priority=PriorityMessage(priority_key=LIVE_KEY)
            ),
            update_mask=FieldMask(paths=["priority"]),
        )
        try:
            await client.workflow_service.update_workflow_execution_options(request)
        except RPCError as exc:
            if exc.status != RPCStatusCode.UNIMPLEMENTED:
                raise
            # a server from before priorities (or the time-skipping test server): nothing to
            # settle, and nothing queued by priority either
            _log.info("instance_priority_unsupported", workflow=input.workflow_id)
            return
        _log.info("instance_priority_settled", workflow=input.workflow_id, key=LIVE_KEY)

    # --- facts -------------------------------------------------------------------------------

    @activity.defn(name=ProcessContract.record_step.name)
    def record_step(self, input: RecordStepInput) -> None:
        """Write one row of the step-outcome fact table, once per (instance, step, visit)."""
        with write_session(self.sessions) as session:
            _record_step(session, input)

    @activity.defn(name=ProcessContract.record_sla_events.name)
    def record_sla_events(self, input: RecordSlaEventsInput) -> None:
        """Append SLA events, each once per (instance, sequence number)."""
        with write_session(self.sessions) as session:
            _record_sla_events(session, input)

    @activity.defn(name=ProcessContract.record_writes.name)
    def record_writes(self, input: StepWrites) -> None:
        """Write what an instance's steps left (closes, facts, SLA events), in one transaction."""
        with write_session(self.sessions) as session:
            _write(session, input)

    # --- alerts ------------------------------------------------------------------------------

    @activity.defn(name=ProcessContract.escalate.name)
    def escalate(self, input: EscalateInput) -> EscalateResult:
        """Run one rung of an SLA ladder: alert someone, or reassign the open task.

        A rung writes one alert per recipient, keyed `<alert_key>:<recipient>`. A reassignment
        also writes its alert (level `escalation`, to the new assignee) in the same
        transaction that changes the task, so a retry finds it and returns the same choice.
        Each new alert queues its notifications (`duly.notify`) in that transaction too.
        """
        log = _log.bind(
            instance=input.instance_id, step=input.step, task=input.task_id, rung=input.rung
        )
        try:
            with write_session(self.sessions) as session:
                if input.reassign:
                    result = self._reassign(session, input, input.reassign)
                else:
                    result = self._notify(session, input, input.notify or "assignee")
                _insert_sla_events(session, input.instance_id, input.first_seq, input.sla_events)
        except AssignmentError as exc:
            log.error("escalation_failed", problem=str(exc))
            raise _assignment_failure(exc) from exc
        log.info("escalated", level=input.level, assignee=result.assignee, notified=result.notified)
        return result

    def _notify(self, session: Session, input: EscalateInput, notify: str) -> EscalateResult:
        task = session.get(Task, input.task_id) if input.task_id else None
        assignee = task.assignee if task is not None else input.assignee
        task_team = task.team if task is not None else None
        recipients = self._recipients(session, input, notify, assignee, task_team)
        message = _alert_message(input, _zone_of(session, input.instance_id), assignee)
        for recipient in recipients:
            alert = _alert(input, input.level, recipient, message)
            if task is not None and task.status != "open" and task.closed_at is not None:
                # the task closed while this rung was on its way: nothing left to act on
                alert.resolved_at, alert.resolved_by = task.closed_at, task.closed_by
                alert.resolution = f"its task was already {task.status}"
            if insert_if_absent(session=session, row=alert):
                notify_alert(session=session, alert=alert, settings=self.settings)
        return EscalateResult(assignee=assignee, notified=recipients)

    def _recipients(
        self,
        session: Session,
        input: EscalateInput,
        notify: str,
        assignee: str | None,
        task_team: str | None,
    ) -> list[str]:
        """Who a `notify:` rule names, as active user ids (at least one, or an error)."""
        kind, _, name = notify.partition(":")
        if notify == "assignee" and assignee:
            return [assignee]
        if notify in ("assignee", "manager", "skip-level"):
            # `assignee` with nobody assigned goes to the manager, so the alert is not lost
            manager = manager_of(session=session, user_id=assignee, team=task_team)
            manager = manager or manager_of_team(session=session, team=input.team)
            if manager is None:
                raise AssignmentError(
                    f"no manager to alert about {_subject(input)}: "
                    + (f"{assignee} is in no team" if assignee else "nobody is assigned")
                    + (f" and team '{input.team}' is unknown" if input.team else "")
                    + "; check the teams in org.yaml"
                )
            if notify != "skip-level":
                return [manager]
            above = skip_level_of(session=session, manager=manager)
            if above is None:
                raise AssignmentError(
                    f"no skip-level manager to alert about {_subject(input)}: {manager} is a "
                    "member of no team with another manager; add them to one in org.yaml"
                )
            return [above]
        if kind == "user" and name:
            return [require_user(session=session, user_id=name)]
        if kind == "team" and name:
            return team_members(session=session, team=name)
        if kind == "manager-of" and name:
            manager = manager_of_team(session=session, team=name)
            if manager is None:
                raise AssignmentError(f"no team '{name}' in org.yaml to alert the manager of")
            return [manager]
        if kind == "role" and name:
            people = users_with_role(session=session, role=name)
            if not people:
                raise AssignmentError(f"no active user has the role '{name}' in org.yaml")
            return people
        raise AssignmentError(
            f"'{notify}' is not a notify rule; expected assignee, manager, skip-level, "
            "user:<id>, team:<team>, manager-of:<team> or role:<role>"
        )

    def _reassign(self, session: Session, input: EscalateInput, rule: str) -> EscalateResult:
        # Lock the task first: a concurrent attempt of this rung then waits and sees our alert
        task = session.get(Task, input.task_id, with_for_update=True) if input.task_id else None
        done = session.exec(
            select(Alert).where(Alert.event_key == input.alert_key, Alert.level == "escalation")
        ).first()
        if done is not None:
            return EscalateResult(assignee=done.recipient, notified=[done.recipient])
        if task is None or task.status != "open":
            # Completed (or never opened) before the rung ran: nothing to take over
            return EscalateResult(assignee=task.assignee if task else input.assignee)
        previous = task.assignee
        if rule == "manager":
            new = manager_of(session=session, user_id=previous, team=task.team)
            new = new or manager_of_team(session=session, team=input.team)
            if new is None:
                raise AssignmentError(
                    f"no manager to take over {_subject(input)}: "
                    f"{previous or 'nobody'} is in no team with a manager; check org.yaml"
                )
        else:
            new, _ = self._assign(session, rule, owner=None, team=None, exclude=previous)
        task.assignee = new
        session.add(task)
        # The alerts so far were about the previous holder's work: resolved, before the new
        # holder's own alert is written (which stays open: it needs them to act)
        how = f"reassigned to {new} (was {previous or 'nobody'}), " + _lateness(
            task.due_at, input.fired_at
        )
        resolve_alerts(session, task.id, task.due_at, at=input.fired_at, by=input.by, how=how)
        message = _alert_message(
            input, _zone_of(session, input.instance_id), new, previous=previous
        )
        alert = _alert(input, "escalation", new, message)
        if insert_if_absent(session=session, row=alert):
            notify_alert(session=session, alert=alert, settings=self.settings)
        if previous and previous != new:
            # the rep who loses the task is told (a notification, not an alert: nothing for
            # them to act on); keyed by the rung, so a retried rung tells them once
            _tell_released(
                session,
                task,
                previous,
                new,
                f"{input.alert_key}/released:{previous}",
                self.settings,
            )
        return EscalateResult(assignee=new, notified=[new])

    @activity.defn(name=ProcessContract.failure_alert.name)
    def failure_alert(self, input: FailureAlertInput) -> None:
        """Tell the process team's manager (or, with no team, every admin) an instance failed."""
        log = _log.bind(instance=input.instance_id, step=input.step)
        with write_session(self.sessions) as session:
            manager = manager_of_team(session=session, team=input.team)
            recipients = (
                [manager]
                if manager
                else list(
                    session.exec(
                        select(User.id)
                        .where(User.role == "admin", col(User.active))
                        .order_by(col(User.id))
                    )
                )
            )
            message = (
                f"Failure: {input.process} instance {input.instance_id} stopped: {input.message}"
            )
            for recipient in recipients:
                row = Alert(
                    key=f"{input.alert_key}:{recipient}",
                    event_key=input.alert_key,
                    instance_id=input.instance_id,
                    process=input.process,
                    step=input.step,
                    level="failure",
                    recipient=recipient,
                    message=message,
                    created_at=input.fired_at,
                )
                if insert_if_absent(session=session, row=row):
                    notify_alert(session=session, alert=row, settings=self.settings)
        if recipients:
            log.warning("failure_alerted", recipients=recipients, problem=input.message)
        else:
            log.error("failure_alert_has_no_recipient", team=input.team, problem=input.message)

    # --- actions -----------------------------------------------------------------------------

    @activity.defn(name=ProcessContract.run_action.name)
    def run_action(self, input: RunActionInput) -> RunActionResult:
        """Run a registered action (email, webhook, set); see activities/actions.py.

        The steps' writes it carries are committed first: the store is never behind what the
        action sends out, and a retry of a failed send finds them written.
        """
        if input.writes is not None:
            with write_session(self.sessions) as session:
                _write(session, input.writes)
        return actions.run(input, self.settings, self.handlers)


# --- helpers -----------------------------------------------------------------------------------


def _tell_released(
    session: Session, task: Task, previous: str, new: str, key: str, settings: Settings
) -> None:
    """Tell `previous` the task was reassigned to `new`: it is no longer in their inbox."""
    record = load_record(session, task.instance_id)
    message = Message(
        kind="task.reassigned",
        label="Reassigned",
        subject=f"No longer yours: {task.title} (now with {new})",
        headline=task.title,
        summary=f"This task in {task.process} was reassigned to {new}; "
        "it has left your duly inbox and needs nothing more from you.",
        facts=[
            Fact(label="Task", value=task.title),
            Fact(label="Process", value=task.process),
            Fact(label="Now assigned to", value=new),
            *(record_fields(record.instance.data) if record.instance is not None else []),
        ],
        actions=[Action(label="Open the instance", url=instance_url(settings, task.instance_id))],
        footer="Sent because the task was assigned to you.",
    )
    queue_message(
        session=session,
        message=message,
        key=key,
        user=previous,
        payload={"task": {"id": task.id, "assignee": new, "previous": previous}},
    )


def _team_for(session: Session, user_id: str, preferred: str | None) -> str | None:
    """The team a user's task counts for: the process's team if they are in it, else theirs."""
    teams = teams_of(session=session, user_id=user_id)
    if preferred is None or preferred in teams:
        return preferred if preferred is not None else next(iter(teams), None)
    return teams[0] if teams else preferred


def _start_instance(session: Session, input: StartInstanceInput) -> None:
    """Record a new instance and the definition it is pinned to, once.

    Raises:
        ApplicationError: `DEFINITION_NOT_STORED` when the store lacks the definition and the
            input does not carry its content: the workflow sends it again with it.
    """
    log = _log.bind(instance=input.instance_id, process=input.process)
    if not input.compiled_json:
        if not is_stored_whole(session, input.process, input.version, input.hash):
            raise ApplicationError(
                f"{input.process} version {input.version} ({input.hash[:12]}) is not stored; "
                "send its content",
                type=DEFINITION_NOT_STORED,
                non_retryable=True,
            )
        # stored whole with this hash: there is nothing of the definition to write
    else:
        try:
            store_definition(
                session=session,
                process=input.process,
                version=input.version,
                hash=input.hash,
                source=input.source,
                compiled_json=input.compiled_json,
            )
        except VersionConflict as exc:
            # The instance runs on the definition it was started with, whatever is stored
            log.warning("definition_version_conflict", hash=input.hash, problem=str(exc))
    inserted = insert_if_absent(
        session=session,
        row=Instance(
            id=input.instance_id,
            workflow_id=input.workflow_id,
            process=input.process,
            version=input.version,
            hash=input.hash,
            business_key=input.business_key,
            data=input.data,
            started_at=input.started_at,
        ),
    )
    log.info("instance_started" if inserted else "instance_already_recorded")


def _write(session: Session, writes: StepWrites | None) -> None:
    """What an instance's steps left to write; each part is written once, however often."""
    _start_and_close(session, writes)
    _record_steps_and_events(session, writes)


def _start_and_close(session: Session, writes: StepWrites | None) -> None:
    """The writes' instance start, if they carry it, then their task closes."""
    if writes is not None and writes.start is not None:
        _start_instance(session, writes.start)
    for close in writes.closes if writes else []:
        _close_task(session, close)


def _record_steps_and_events(session: Session, writes: StepWrites | None) -> None:
    for step in writes.steps if writes else []:
        _record_step(session, step)
    if writes is not None and writes.sla_events is not None:
        _record_sla_events(session, writes.sla_events)


def _close_task(session: Session, input: CloseTaskInput) -> None:
    """Complete or cancel an open task, resolving its alerts; a closed task is left alone."""
    log = _log.bind(task=input.task_id)
    task = session.connection().execute(_CLOSING, {"id": input.task_id}).first()
    if task is None:
        raise _missing("task", input.task_id, "open_task must run first")
    log = log.bind(instance=task.instance_id, step=task.step)
    if task.status != "open":
        log.info("task_already_closed", status=task.status)
        return
    session.exec(
        _CLOSE,
        params={
            "task": input.task_id,
            "status": input.status,
            "outcome": input.outcome,
            "note": input.note,
            "closed_by": input.closed_by,
            "closed_at": input.closed_at,
        },
    )
    # Its alerts no longer need anyone to act: resolved with the task, in its transaction
    by = input.closed_by or task.assignee
    if input.status == "completed":
        how = f"completed {_lateness(task.due_at, input.closed_at)} by {by or 'nobody'}"
    else:
        why = (input.outcome or "").removeprefix("event:") or "the instance"
        how = f"cancelled by {why}, {_lateness(task.due_at, input.closed_at)}"
    resolve_alerts(session, input.task_id, task.due_at, at=input.closed_at, by=by, how=how)
    closed = metrics.TASKS_COMPLETED if input.status == "completed" else metrics.TASKS_CANCELLED
    count_on_commit(session, closed.labels(process=task.process))
    log.info("task_closed", status=input.status, outcome=input.outcome)


def _record_step(session: Session, input: RecordStepInput) -> None:
    """One row of the step-outcome fact table, once per (instance, step, visit)."""
    fact = input.model_dump()
    inserted = insert_values_if_absent(session=session, table=_STEP_FACTS, values=fact)
    if inserted:
        # Counted in the weekly rollup in the same transaction: once, with its fact
        zone = timefmt.zone(definition_zone(session, input.process, input.version)) or UTC
        add_fact(session, fact, zone)
    _log.info(
        "step_recorded" if inserted else "step_already_recorded",
        instance=input.instance_id,
        step=input.step,
        visit=input.visit,
    )


def _record_sla_events(session: Session, input: RecordSlaEventsInput) -> None:
    _insert_sla_events(session, input.instance_id, input.first_seq, input.events)
    _log.info("sla_events_recorded", instance=input.instance_id, count=len(input.events))


def _insert_sla_events(
    session: Session, instance_id: str, first_seq: int, events: list[SlaEvent]
) -> None:
    """Add each SLA event once per (instance, sequence number); count a new breach on commit."""
    for offset, event in enumerate(events):
        row = {"instance_id": instance_id, "seq": first_seq + offset, **event.model_dump()}
        if insert_values_if_absent(session=session, table=_SLA_EVENTS, values=row) and (
            event.kind == "breach"
        ):
            process = instance_id.split("/", 1)[0]
            breach = metrics.SLA_BREACHES.labels(process=process, clock=event.clock)
            count_on_commit(session, breach)


def _alert(input: EscalateInput, level: str, recipient: str, message: str) -> Alert:
    return Alert(
        key=f"{input.alert_key}:{recipient}",
        event_key=input.alert_key,
        instance_id=input.instance_id,
        process=input.process,
        step=input.step,
        clock=input.clock,
        level=level,
        recipient=recipient,
        message=message,
        created_at=input.fired_at,
        task_id=input.task_id,
    )


def resolve_alerts(
    session: Session,
    task_id: str,
    due_at: datetime | None,
    *,
    at: datetime,
    by: str | None,
    how: str,
) -> int:
    """Resolve the task's alerts not yet resolved: its work no longer waits on them.

    Idempotent: an alert resolved once keeps its first resolution, so a retried activity
    changes nothing. Acknowledged alerts are resolved too (the resolution says how it ended).

    Returns:
        How many alerts this call resolved.
    """
    resolved = session.exec(
        _RESOLVE,
        params={
            "task": task_id,
            "resolved_at": at,
            "resolved_by": by,
            "resolution": how,
            "late_seconds": _late_seconds(due_at, at),
        },
    )
    return resolved.rowcount


def _late_seconds(due: datetime | None, at: datetime) -> float | None:
    return None if due is None else max((at - due).total_seconds(), 0.0)


def _lateness(due: datetime | None, at: datetime) -> str:
    """How late, in wall time: "3 h 10 min late", "on time", or "with no due time"."""
    late = _late_seconds(due, at)
    if late is None:
        return "with no due time"
    if late <= 0:
        return "on time"
    minutes = round(late / 60)
    if minutes == 0:
        return "less than a minute late"
    days, rest = divmod(minutes, 24 * 60)
    hours, minutes = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{minutes} min"]
    if minutes == 0 and (days or hours):
        parts[-1] = ""
    return " ".join(p for p in parts if p) + " late"


def _zone_of(session: Session, instance_id: str) -> tzinfo:
    """The time zone of the instance's calendar, for due times people read; UTC if unknown.

    Read through `load_record`, which reads and parses each stored definition once per store
    for every row that needs it (a storm's thousand alerts, a day's facts).
    """
    return timefmt.zone(load_record(session, instance_id).zone_name) or UTC


def _subject(input: EscalateInput) -> str:
    if input.title:
        return f"'{input.title}' ({input.process})"
    return f"the {input.clock} clock of {input.instance_id}"


def _when(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def _alert_message(
    input: EscalateInput, zone: tzinfo, assignee: str | None, *, previous: str | None = None
) -> str:
    """A sentence a manager reads, e.g. "Breach: 'Call Ana' (quote-follow-up) was due ...".

    With `previous`, the rung reassigned the task from `previous` to `assignee`.
    """
    due = ""
    if input.due_at is not None:
        tense = "is" if input.due_at > input.fired_at else "was"
        due = f" {tense} due {_when(input.due_at, zone)} and"
    if previous is not None or input.reassign:
        was = f" (was {previous})" if previous and previous != assignee else ""
        return f"Reassigned: {_subject(input)}{due} is now assigned to {assignee}{was}"
    who = f"assigned to {assignee}" if assignee else "unassigned"
    return f"{input.level.capitalize()}: {_subject(input)}{due} is still open, {who}"
