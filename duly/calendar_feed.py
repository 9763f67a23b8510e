"""A user's open tasks as an iCalendar feed, at a secret per-user URL that can be rotated.

The URL is `<public url>/calendar/<user>/<secret>.ics`. Its secret is an HMAC of the user and
the feed's generation under duly's link key (`duly.notify.ack_links.ack_secret`), so the
database keeps only the generation: rotating moves to the next one and every older URL stops
working. A user without a feed row has no feed until `duly calendar-url USER` makes one.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta

from icalendar import Calendar, Event
from sqlmodel import Session, col, select

from duly import timefmt
from duly.notify.ack_links import ack_secret
from duly.notify.messages import instance_url, load_record, reader_zone
from duly.settings import Settings, web_url
from duly.store.crud import insert_if_absent
from duly.store.models import CalendarFeed, Task, User
from duly.store.types import utc_now

EVENT_LENGTH = timedelta(minutes=15)  # a task shows as a short event at its due time
SECRET_CHARS = 40


def feed_secret(settings: Settings, user_id: str, generation: int) -> str:
    """The secret part of a user's feed URL for one generation."""
    message = f"duly-calendar:{user_id}:{generation}".encode()
    return hmac.new(ack_secret(settings).encode(), message, hashlib.sha256).hexdigest()[
        :SECRET_CHARS
    ]


def feed_url(settings: Settings, user_id: str, generation: int) -> str:
    """The feed's full URL."""
    return (
        f"{web_url(settings)}/calendar/{user_id}/{feed_secret(settings, user_id, generation)}.ics"
    )


def ensure_feed(*, session: Session, user_id: str, rotate: bool = False) -> int:
    """The user's feed generation, made on first use and moved on by `rotate`; caller commits."""
    insert_if_absent(
        session=session, row=CalendarFeed(user_id=user_id, generation=1, rotated_at=utc_now())
    )
    feed = session.get_one(CalendarFeed, user_id)
    if rotate:
        feed.generation += 1
        feed.rotated_at = utc_now()
        session.add(feed)
        session.flush()
    return feed.generation


def feed_owner(*, session: Session, settings: Settings, user_id: str, secret: str) -> User | None:
    """The active user whose current feed secret `secret` is; None for anything else."""
    feed = session.get(CalendarFeed, user_id)
    user = session.get(User, user_id)
    if feed is None or user is None or not user.active:
        return None
    expected = feed_secret(settings, user_id, feed.generation)
    return user if hmac.compare_digest(expected.encode(), secret.encode()) else None


def feed(*, session: Session, settings: Settings, user: User, now: datetime | None = None) -> bytes:
    """The user's open tasks that have a due time, as an iCalendar document."""
    calendar = Calendar()
    calendar.add("prodid", "-//duly//tasks//EN")
    calendar.add("version", "2.0")
    calendar.add("x-wr-calname", f"duly: {user.name}'s tasks")
    stamp = now or utc_now()
    tasks = session.exec(
        select(Task)
        .where(Task.assignee == user.id, Task.status == "open", col(Task.due_at).is_not(None))
        .order_by(col(Task.due_at))
    ).all()
    for task in tasks:
        assert task.due_at is not None
        zone = reader_zone(session, user.id, load_record(session, task.instance_id))
        due = task.due_at.astimezone(zone)
        event = Event()
        event.add("uid", f"{task.id}@duly")
        event.add("dtstamp", stamp)
        event.add("dtstart", task.due_at)
        event.add("dtend", task.due_at + EVENT_LENGTH)
        event.add("summary", f"{task.title}, due {due:%H:%M}")
        event.add(
            "description",
            f"{task.process} / {task.step}, due {timefmt.local(task.due_at, zone)}",
        )
        event.add("url", instance_url(settings, task.instance_id))
        calendar.add_component(event)
    document: bytes = calendar.to_ical()
    return document
