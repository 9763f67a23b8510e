"""The monitor workflow's activities: measure a monitor, then record the check and alert.

Sync activities (the worker runs them on its thread pool), one session each. `record` is
idempotent and race-free: it locks the monitor's state row first, then looks for the slot's
check, so a retried activity, or a second run of the same slot, finds the first one's check
and alerts nobody again. An alert goes through the same path as the SLA ladder's: one `alerts`
row per recipient, keyed by the monitor, slot and transition, and its notifications queued in
the same transaction (`duly.notify`).
"""

from __future__ import annotations

import structlog
from sqlmodel import Session, col, select
from temporalio import activity

from duly import metrics
from duly.language.model import MonitorSpec
from duly.metrics import count_on_commit
from duly.monitors import measures
from duly.monitors.messages import (
    MeasureInput,
    MeasureResult,
    RecordCheckInput,
    RecordCheckResult,
    State,
    Transition,
)
from duly.monitors.thresholds import describe, next_state
from duly.notify import notify_alert
from duly.store.assignment import AssignmentError, manager_of_team, team_members
from duly.store.crud import insert_if_absent
from duly.store.db import SessionFactory, write_session
from duly.store.models import Alert, MonitorCheck, MonitorState, User
from workflows.contracts import MonitorContract

_log = structlog.get_logger(__name__)

MEASURE_WORDS = {
    "open_tasks": "open tasks",
    "overdue_tasks": "overdue tasks",
    "attainment": "SLA attainment",
    "gauge": "the reported value",
}


def alert_key(monitor: str, slot: str, transition: Transition) -> str:
    """The key of the alert a transition raises: `monitor/<monitor>/<slot>/<transition>`."""
    return f"monitor/{monitor}/{slot}/{transition}"


class MonitorActivities:
    """The activities of `MonitorWorkflow`, holding their database.

    Args:
        sessions: Makes one session per activity call (`duly.store.db.session_factory`).
    """

    def __init__(self, sessions: SessionFactory) -> None:
        self.sessions = sessions

    @activity.defn(name=MonitorContract.measure.name)
    def measure(self, input: MeasureInput) -> MeasureResult:
        """Measure the monitor's value as of `input.at` (a read; nothing is written)."""
        with self.sessions() as session:
            value = measures.measure(
                session=session,
                name=input.monitor.measure,
                where=input.monitor.filter,
                at=input.at,
                period=input.period,
                timezone=input.timezone,
                gauge_spec=input.monitor.gauge,
            )
        _log.info("monitor_measured", monitor=input.monitor.monitor, value=value)
        return MeasureResult(value=value)

    @activity.defn(name=MonitorContract.record.name)
    def record(self, input: RecordCheckInput) -> RecordCheckResult:
        """Record the slot's check, move the monitor's state, and alert on a transition, once.

        A check older than the last one recorded (a slot retried for a long time, say) is kept
        but moves nothing: the newer check already decided the state.
        """
        spec = input.monitor
        log = _log.bind(monitor=spec.monitor, slot=input.slot)
        with write_session(self.sessions) as session:
            state = _lock_state(session, spec.monitor)
            done = session.exec(
                select(MonitorCheck).where(
                    MonitorCheck.monitor == spec.monitor, MonitorCheck.slot == input.slot
                )
            ).first()
            if done is not None:
                log.info("monitor_check_already_recorded", state=done.state)
                return RecordCheckResult(
                    state=_state(done.state),
                    transition=_transition(done.transition),
                    notified=_notified(session, spec.monitor, done.slot, done.transition),
                    repeated=True,
                )
            before = _state(state.state)
            stale = state.last_checked_at is not None and input.checked_at < state.last_checked_at
            after, transition = (
                (before, None) if stale else next_state(spec.threshold, before, input.value)
            )
            # Counted once the check commits: a rolled-back attempt, or a repeated slot, is not
            count_on_commit(
                session, metrics.MONITOR_CHECKS.labels(monitor=spec.monitor, state=after)
            )
            insert_if_absent(
                session=session,
                row=MonitorCheck(
                    monitor=spec.monitor,
                    slot=input.slot,
                    value=input.value,
                    state=after,
                    transition=transition,
                    checked_at=input.checked_at,
                ),
            )
            if not stale:
                state.state, state.last_value = after, input.value
                state.last_slot, state.last_checked_at = input.slot, input.checked_at
                if transition is not None:
                    state.changed_at = input.checked_at
                session.add(state)
            notified: list[str] = []
            if transition is not None:
                notified = self._alert(session, input, transition)
        log.info("monitor_checked", value=input.value, state=after, transition=transition)
        return RecordCheckResult(state=after, transition=transition, notified=notified)

    def _alert(
        self, session: Session, input: RecordCheckInput, transition: Transition
    ) -> list[str]:
        spec = input.monitor
        recipients = _recipients(session, spec, input.manager_team)
        key = alert_key(spec.monitor, input.slot, transition)
        message = alert_message(spec, input.value, transition)
        for recipient in recipients:
            alert = Alert(
                key=f"{key}:{recipient}",
                event_key=key,
                process=spec.filter.process,
                step=spec.filter.step,
                level="threshold" if transition == "crossed" else "recovery",
                recipient=recipient,
                message=message,
                created_at=input.checked_at,
            )
            if insert_if_absent(session=session, row=alert):
                notify_alert(session=session, alert=alert)
        return recipients


def alert_message(spec: MonitorSpec, value: float | None, transition: Transition) -> str:
    """What the alert says, e.g. "Keep the support backlog under 40: 41 open tasks ...".

    Args:
        spec: The monitor.
        value: The value that crossed (or came back).
        transition: `crossed` or `recovered`.
    """
    what = MEASURE_WORDS[spec.measure]
    scope = ", ".join(f"{k} {v}" for k, v in spec.filter.model_dump().items() if v is not None)
    if spec.gauge is not None:  # e.g. "backlog reported by helpdesk.backlog (queue support)"
        what = f"{spec.gauge.value} reported by {spec.gauge.event}"
        scope = ", ".join(f"{k} {v}" for k, v in spec.gauge.where.items())
    shown = _shown(spec.measure, value)
    about = f"{what} ({scope})" if scope else what
    if transition == "crossed":
        return (
            f"Monitor {spec.monitor}: {spec.title}: {about} is {shown}, {describe(spec.threshold)}"
        )
    return f"Recovered: monitor {spec.monitor}: {spec.title}: {about} is back to {shown}"


def _shown(measure: str, value: float | None) -> str:
    if value is None:
        return "unknown"
    if measure == "attainment":
        return f"{value:.1f}%"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _lock_state(session: Session, monitor: str) -> MonitorState:
    """The monitor's state row, created if new, locked for the rest of the transaction."""
    insert_if_absent(session=session, row=MonitorState(monitor=monitor, state="ok"))
    return session.exec(
        select(MonitorState)
        .where(MonitorState.monitor == monitor)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def _recipients(session: Session, spec: MonitorSpec, manager_team: str | None) -> list[str]:
    """Who hears about a transition; every admin when none of `notify` names anyone now.

    A target org.yaml no longer has is skipped with a warning rather than failing the check:
    the alert still reaches whoever else it names (or the admins).
    """
    people: list[str] = []
    for target in spec.notify:
        kind, _, name = target.partition(":")
        if target == "manager":
            manager = manager_of_team(session=session, team=manager_team)
            found = [manager] if manager else []
        elif kind == "team":
            try:
                found = team_members(session=session, team=name)
            except AssignmentError:
                found = []
        elif kind == "user":
            user = session.get(User, name)
            found = [name] if user is not None and user.active else []
        else:
            found = []
        if not found:
            _log.warning("monitor_target_unknown", monitor=spec.monitor, target=target)
        people.extend(found)
    if not people:
        people = list(
            session.exec(
                select(User.id).where(User.role == "admin", col(User.active)).order_by(col(User.id))
            )
        )
        _log.warning("monitor_alert_to_admins", monitor=spec.monitor, admins=people)
    return list(dict.fromkeys(people))


def _notified(session: Session, monitor: str, slot: str, transition: str | None) -> list[str]:
    if transition is None:
        return []
    key = alert_key(monitor, slot, _transition(transition) or "crossed")
    return list(
        session.exec(select(Alert.recipient).where(Alert.event_key == key).order_by(col(Alert.id)))
    )


def _state(value: str) -> State:
    return "alerting" if value == "alerting" else "ok"


def _transition(value: str | None) -> Transition | None:
    if value == "crossed":
        return "crossed"
    if value == "recovered":
        return "recovered"
    return None
