"""What duly tells people: a task assigned to them, an alert raised for them.

Each function words one notification (a subject, a plain-text body and structured data for
the JSON webhook) and queues it on the person's channels with `duly.notify.outbox.enqueue`,
in the caller's transaction. Due times read in the instance's calendar zone.
"""

from __future__ import annotations

from datetime import datetime, tzinfo

from sqlmodel import Session

from duly.metrics import ALERTS_RAISED, count_on_commit
from duly.notify.outbox import enqueue
from duly.store.models import Alert, Task


def _when(moment: datetime, zone: tzinfo) -> str:
    return moment.astimezone(zone).strftime("%Y-%m-%d %H:%M %Z")


def assignment_key(task: Task) -> str:
    """The notification key of `task`'s assignment to its current assignee."""
    return f"{task.id}:assigned:{task.assignee}"


def notify_task_assigned(
    *, session: Session, task: Task, zone: tzinfo, key: str | None = None
) -> list[str]:
    """Tell a task's assignee they have it: its title, process and due time.

    Args:
        session: The transaction that assigns the task.
        task: The task, with its new assignee.
        zone: The time zone its due time is shown in (the instance's calendar's).
        key: The notification key; defaults to `assignment_key(task)`. A second assignment
            to the same person (a reassignment back, say) needs a key of its own.

    Returns:
        The channels it was queued on.
    """
    if task.assignee is None:
        return []
    due_at = _when(task.due_at, zone) if task.due_at else None
    due = f"Due: {due_at}" if due_at else "No due time."
    body = "\n".join(
        [
            f"You have a new task: {task.title}",
            "",
            f"Process: {task.process} (step {task.step})",
            due,
            *([f"Outcomes: {', '.join(task.outcomes)}"] if task.outcomes else []),
            f"Task: {task.id}",
            "",
            "It is in your duly inbox.",
        ]
    )
    return enqueue(
        session=session,
        key=key or assignment_key(task),
        user=task.assignee,
        kind="task.assigned",
        subject=f"New task: {task.title}" + (f" (due {due_at})" if due_at else ""),
        body=body,
        payload={
            "task": {
                "id": task.id,
                "title": task.title,
                "process": task.process,
                "step": task.step,
                "instance_id": task.instance_id,
                "assignee": task.assignee,
                "team": task.team,
                "outcomes": list(task.outcomes),
                "opened_at": task.opened_at.isoformat(),
                "due_at": task.due_at.isoformat() if task.due_at else None,
            }
        },
    )


def notify_alert(*, session: Session, alert: Alert) -> list[str]:
    """Tell an alert's recipient about it (a warning, breach, reassignment or failure).

    Args:
        session: The transaction that writes the alert.
        alert: The alert row; its `key` is the notification key.

    Returns:
        The channels it was queued on.
    """
    body = "\n".join(
        [
            alert.message,
            "",
            *([f"Instance: {alert.instance_id}"] if alert.instance_id else []),
            "Acknowledge it in duly's alerts.",
        ]
    )
    # Every new alert comes through here, in the transaction that writes it
    count_on_commit(session, ALERTS_RAISED.labels(level=alert.level))
    return enqueue(
        session=session,
        key=alert.key,
        user=alert.recipient,
        kind=f"alert.{alert.level}",
        subject=alert.message,
        body=body,
        payload={
            "alert": {
                "key": alert.key,
                "level": alert.level,
                "instance_id": alert.instance_id,
                "process": alert.process,
                "step": alert.step,
                "clock": alert.clock,
                "recipient": alert.recipient,
                "message": alert.message,
                "created_at": alert.created_at.isoformat(),
            }
        },
    )
