"""What duly tells people: a task assigned to them, an alert raised for them, a weekly summary.

Each notification is one `Message` (`duly.notify.model`), built from what the database knows
(the task, its instance's data, the process's calendar, the reader's own time zone) and
rendered for every channel by `duly.notify.render`, then queued on the person's channels with
`duly.notify.outbox.enqueue`, in the caller's transaction. A message says: what and which
record (the step's title rendered for the instance, the record's key fields), the due time in
the reader's zone with its abbreviation (`duly.timefmt`), how late in business and wall time,
the rung, a link to the instance and, for a manager, a signed acknowledge link.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from urllib.parse import quote

from sqlmodel import Session, col, select

from duly import timefmt
from duly.language import business_time, expressions
from duly.language.business_time import BusinessCalendar
from duly.language.compiler import CompiledProcess
from duly.metrics import ALERTS_RAISED, count_on_commit
from duly.notify import render
from duly.notify.ack_links import LINK_LIFETIME, ack_secret, make_token
from duly.notify.model import Action, Fact, Message
from duly.notify.outbox import channels_of, enqueue
from duly.settings import Settings, get_settings, web_url
from duly.store.models import Alert, Instance, Task, User
from duly.store.parsed import definition

RECORD_FIELDS = 6
"""How many of the record's fields a message lists (the first ones of its data)."""
FIELD_CHARS = 80
"""A longer field value is cut to this many characters."""

LABELS = {
    "warning": "Warning",
    "breach": "Breach",
    "escalation": "Escalation",
    "failure": "Failure",
}


# --- what a message knows about an instance ----------------------------------------------------


@dataclass(frozen=True)
class Record:
    """An instance as a notification shows it.

    Attributes:
        instance: The instance row, when recorded.
        process: The compiled definition it runs, when stored whole.
        zone_name: Its calendar's time zone (IANA name), when known.
        calendar: Its business calendar, for lateness in business time.
    """

    instance: Instance | None
    process: CompiledProcess | None
    zone_name: str | None
    calendar: BusinessCalendar | None


def _read_once(session: Session, kind: str) -> dict[str, Any]:
    """What this transaction has read for messages, by id: read again, it is taken from here.

    A session's identity map holds rows weakly, so a row read for one line of a message and
    dropped is read again for the next: an alert named its manager three times and its
    instance twice. Kept in the session, a transaction reads each row once, and sees the rows
    it changes (they are the same objects).
    """
    read: dict[str, Any] = session.info.setdefault(f"duly.notify.read.{kind}", {})
    return read


def _user(session: Session, user_id: str) -> User | None:
    """A user row, read once a transaction."""
    users = _read_once(session, "users")
    if user_id not in users:
        user = session.get(User, user_id)
        if user is None:
            return None  # not kept: the transaction may yet add them
        users[user_id] = user
    return users[user_id]  # type: ignore[no-any-return]


def load_record(session: Session, instance_id: str | None) -> Record:
    """The instance, its definition and its calendar; what is missing is None.

    Read once a transaction: an alert's message and its zone ask for the same record.
    """
    records = _read_once(session, "records")
    if instance_id in records:
        return records[instance_id]  # type: ignore[no-any-return]
    instance = session.get(Instance, instance_id) if instance_id else None
    if instance is None:
        return Record(None, None, None, None)  # not kept: the transaction may yet add it
    process, zone_name = definition(session, instance.process, instance.version, instance.hash)
    record = Record(instance, process, zone_name, process.calendar if process else None)
    records[instance.id] = record
    return record


def reader_zone(session: Session, user_id: str, record: Record) -> tzinfo:
    """The zone `user_id` reads this instance's times in: theirs, else the calendar's."""
    user = _user(session, user_id)
    return timefmt.reader_zone(record.zone_name, user.timezone if user else None)


def record_fields(data: dict[str, Any], limit: int = RECORD_FIELDS) -> list[Fact]:
    """The first `limit` plain values of an instance's data, labelled by their path."""
    facts: list[Fact] = []

    def walk(value: Any, path: str) -> None:
        if len(facts) >= limit:
            return
        if isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, str | int | float | bool) and path:
            text = str(value)
            if len(text) > FIELD_CHARS:
                text = text[: FIELD_CHARS - 1] + "…"
            facts.append(Fact(label=path, value=text))

    walk(data, "")
    return facts


def step_title(record: Record, step: str | None) -> str | None:
    """A step's title rendered with the instance's data; the raw text if the template fails."""
    if record.process is None or step is None:
        return None
    spec = record.process.spec.steps.get(step)
    title = getattr(spec, "title", None) if spec is not None else None
    if not title:
        return None
    data = record.instance.data if record.instance is not None else {}
    try:
        return expressions.render(str(title), data)
    except expressions.ExpressionError:
        return str(title)


def lateness(record: Record, due_at: datetime, at: datetime) -> str:
    """How late `at` is against `due_at`, in business time (when the calendar is known) and wall."""
    wall = timefmt.duration((at - due_at).total_seconds())
    business = None
    if record.calendar is not None:
        early, late = sorted((due_at, at))
        seconds = business_time.elapsed(record.calendar, early, late).total_seconds()
        business = timefmt.duration(seconds)
    if at >= due_at:
        if business is None:
            return f"late by {wall} (wall time)"
        return f"late by {business} business time ({wall} wall time)"
    if business is None:
        return f"not late: {wall} left (wall time)"
    return f"not late: {business} business time left ({wall} wall time)"


def instance_url(settings: Settings, instance_id: str) -> str:
    """The instance's page in the web app."""
    return f"{web_url(settings)}/instances/{quote(instance_id, safe='/')}"


def task_of(session: Session, alert: Alert) -> Task | None:
    """The task an alert is about: named by its key when it can be, else the step's latest."""
    if alert.instance_id is None or alert.step is None:
        return None
    head, _, _ = alert.event_key.rpartition("/")
    visit = head.rpartition("/")[2]
    if visit.isdigit():
        task = session.get(Task, f"{alert.instance_id}/{alert.step}/{visit}")
        if task is not None:
            return task
    if "/reassign/" in alert.event_key:
        task = session.get(Task, alert.event_key.split("/reassign/")[0])
        if task is not None:
            return task
    return session.exec(
        select(Task)
        .where(Task.instance_id == alert.instance_id, Task.step == alert.step)
        .order_by(col(Task.visit).desc())
    ).first()


def _rung(record: Record, alert: Alert) -> str | None:
    """`2 of 3`, from the alert's key (the ladder's 0-based index) and the clock's ladder."""
    # `<rung>` or, for a rung's later actions, `<rung>.<action>`
    index = alert.event_key.rpartition("/")[2].partition(".")[0]
    if not index.isdigit():
        return None
    number = int(index) + 1
    ladder: list[Any] = []
    if record.process is not None and alert.clock:
        spec = record.process.spec
        if alert.clock.startswith("step:"):
            step = spec.steps.get(alert.clock.removeprefix("step:"))
            sla = getattr(step, "sla", None)
            ladder = list(sla.escalate) if sla is not None else []
        else:
            clock = getattr(spec, "clocks", {}).get(alert.clock)
            ladder = list(clock.escalate) if clock is not None else []
    if 0 < number <= len(ladder):
        rung = ladder[number - 1]
        action = (
            f"reassign to {rung.reassign}"
            if rung.reassign
            else f"notify {rung.notify}"
            if rung.notify
            else rung.summary
        )
        return f"{number} of {len(ladder)} ({action} at {rung.at * 100:g}%)"
    return str(number)


def _name(session: Session, user_id: str | None) -> str:
    if not user_id:
        return "nobody"
    user = _user(session, user_id)
    return f"{user.name} ({user_id})" if user is not None else user_id


def _process_label(record: Record, process: str | None) -> str:
    title = record.process.spec.title if record.process is not None else None
    name = process or (record.instance.process if record.instance else "")
    return f"{title} ({name})" if title and title != name else name


# --- the messages ------------------------------------------------------------------------------


def task_assigned_message(
    *, session: Session, task: Task, settings: Settings | None = None
) -> Message:
    """The message telling a task's assignee they have it."""
    settings = settings or get_settings()
    record = load_record(session, task.instance_id)
    assert task.assignee is not None
    zone = reader_zone(session, task.assignee, record)
    facts = [
        Fact(label="Task", value=task.title),
        Fact(label="Process", value=_process_label(record, task.process)),
        Fact(label="Step", value=task.step),
    ]
    facts += _record_facts(record)
    if task.due_at is not None:
        facts.append(Fact(label="Due", value=timefmt.local(task.due_at, zone)))
        facts.append(Fact(label="Time left", value=lateness(record, task.due_at, task.opened_at)))
    if task.outcomes:
        facts.append(Fact(label="Outcomes", value=", ".join(task.outcomes)))
    due = f" (due {timefmt.local(task.due_at, zone)})" if task.due_at else ""
    return Message(
        kind="task.assigned",
        label="New task",
        subject=f"New task: {task.title}{due}",
        headline=task.title,
        summary=f"You have a new task in {task.process}; it is in your duly inbox.",
        facts=facts,
        actions=[
            Action(label="Open the instance", url=instance_url(settings, task.instance_id)),
            Action(label="Open my inbox", url=f"{web_url(settings)}/inbox", primary=True),
        ],
        footer=f"Sent to {_name(session, task.assignee)} because the task is assigned to them.",
    )


def _record_facts(record: Record) -> list[Fact]:
    if record.instance is None:
        return []
    return [
        Fact(label="Record", value=record.instance.business_key),
        *record_fields(record.instance.data),
    ]


def alert_message(*, session: Session, alert: Alert, settings: Settings | None = None) -> Message:
    """The message telling an alert's recipient about it, with an acknowledge link for managers."""
    settings = settings or get_settings()
    record = load_record(session, alert.instance_id)
    zone = reader_zone(session, alert.recipient, record)
    task = task_of(session, alert)
    reassigned = alert.level == "escalation" and alert.message.startswith("Reassigned")
    label = "Reassigned" if reassigned else LABELS.get(alert.level, alert.level.capitalize())
    headline = (
        task.title
        if task is not None
        else step_title(record, alert.step) or alert.step or alert.clock or "an instance"
    )
    due = timefmt.local(task.due_at, zone) if task is not None and task.due_at else None
    summary = _alert_summary(session, alert, task, due, reassigned)
    facts = [Fact(label="Task" if task is not None else "About", value=headline)]
    facts.append(Fact(label="Process", value=_process_label(record, alert.process)))
    if alert.step:
        facts.append(Fact(label="Step", value=alert.step))
    facts += _record_facts(record)
    if task is not None:
        facts.append(Fact(label="Assigned to", value=_name(session, task.assignee)))
        if task.due_at is not None:
            facts.append(Fact(label="Due", value=timefmt.local(task.due_at, zone)))
            facts.append(Fact(label="Late", value=lateness(record, task.due_at, alert.created_at)))
    rung = _rung(record, alert)
    if rung is not None:
        facts.append(Fact(label="Rung", value=rung))
    facts.append(Fact(label="Raised", value=timefmt.local(alert.created_at, zone)))
    actions = []
    if alert.instance_id:
        actions.append(
            Action(label="Open the instance", url=instance_url(settings, alert.instance_id))
        )
    recipient = _user(session, alert.recipient)
    if recipient is not None and recipient.role in ("manager", "admin"):
        token = make_token(
            ack_secret(settings),
            alert_key=alert.key,
            user=alert.recipient,
            expires_at=alert.created_at + LINK_LIFETIME,
        )
        actions.append(
            Action(label="Acknowledge", url=f"{web_url(settings)}/ack/{token}", primary=True)
        )
        summary += " Acknowledge it so your team knows you have seen it."
    return Message(
        kind=f"alert.{alert.level}",
        label=label,
        subject=f"{label}: {headline}" + (f" (due {due})" if due else ""),
        headline=headline,
        summary=summary,
        facts=facts,
        actions=actions,
        footer=f"Sent to {_name(session, alert.recipient)}: this alert is addressed to them.",
    )


def _alert_summary(
    session: Session, alert: Alert, task: Task | None, due: str | None, reassigned: bool
) -> str:
    """What happened, in a sentence, with times in the reader's zone."""
    if task is None or alert.level == "failure":
        return alert.message.rstrip(".") + "."
    holder = _name(session, task.assignee)
    if reassigned:
        return f"The task{f' was due {due} and' if due else ''} is now assigned to {holder}."
    if due is None:
        return f"The task is still open, assigned to {holder}."
    tense = "is" if task.due_at is not None and task.due_at > alert.created_at else "was"
    return f"The task {tense} due {due} and is still open, assigned to {holder}."


# --- queueing ----------------------------------------------------------------------------------


def queue_message(
    *,
    session: Session,
    message: Message,
    key: str,
    user: str,
    payload: dict[str, Any],
    channels: Sequence[str] | None = None,
) -> list[str]:
    """Queue `message` on `user`'s channels, rendered for each; returns the channels queued.

    `channels` are the user's (`channels_of`), when the caller has read them already.
    """
    return enqueue(
        session=session,
        key=key,
        user=user,
        kind=message.kind,
        subject=message.subject,
        body=render.text(message),
        html=render.html(message),
        slack=render.slack(message),
        payload={**payload, "message": message.model_dump(mode="json")},
        channels=channels,
    )


def assignment_key(task: Task) -> str:
    """The notification key of `task`'s assignment to its current assignee."""
    return f"{task.id}:assigned:{task.assignee}"


def notify_task_assigned(
    *,
    session: Session,
    task: Task,
    key: str | None = None,
    settings: Settings | None = None,
) -> list[str]:
    """Tell a task's assignee they have it: its title, record, due time and links.

    Args:
        session: The transaction that assigns the task.
        task: The task, with its new assignee.
        key: The notification key; defaults to `assignment_key(task)`. A second assignment
            to the same person (a reassignment back, say) needs a key of its own.
        settings: duly's settings (the public URL); the environment's when not given.

    Returns:
        The channels it was queued on.
    """
    if task.assignee is None:
        return []
    channels = channels_of(session, task.assignee)
    if not channels:  # the inbox shows the task; nothing to write the message for
        return []
    message = task_assigned_message(session=session, task=task, settings=settings)
    return queue_message(
        session=session,
        message=message,
        key=key or assignment_key(task),
        user=task.assignee,
        channels=channels,
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
                "opened_at": timefmt.iso(task.opened_at),
                "due_at": timefmt.iso(task.due_at) or None,
            }
        },
    )


def notify_alert(*, session: Session, alert: Alert, settings: Settings | None = None) -> list[str]:
    """Tell an alert's recipient about it (a warning, breach, reassignment or failure).

    Args:
        session: The transaction that writes the alert.
        alert: The alert row; its `key` is the notification key.
        settings: duly's settings (public URL, acknowledge-link key); the environment's when
            not given.

    Returns:
        The channels it was queued on.
    """
    # Every new alert comes through here, in the transaction that writes it
    count_on_commit(session, ALERTS_RAISED.labels(level=alert.level))
    channels = channels_of(session, alert.recipient)
    if not channels:  # the inbox shows the alert; nothing to write the message for
        return []
    message = alert_message(session=session, alert=alert, settings=settings)
    return queue_message(
        session=session,
        message=message,
        key=alert.key,
        user=alert.recipient,
        channels=channels,
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
                "created_at": timefmt.iso(alert.created_at),
            }
        },
    )
