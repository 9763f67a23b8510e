"""The notification outbox: deliveries written beside what they tell about, then claimed to send.

`enqueue` runs inside an activity's transaction: the alert (or task assignment) and its
deliveries commit together or not at all, and the deliveries are keyed
`<notification key>:<channel>`, so a retried activity writes them once. The deliverer then
`claim`s due rows under a lease and reports each outcome with `mark_sent`, `mark_retry` or
`mark_failed`. Functions take keyword arguments and work in the caller's session and
transaction (open it with `duly.store.db.write_session`).

Alerts come first. Each delivery is in a lane, `alert` for every `alert.*` (a breach, a
warning, a reassignment, a failure: what someone must hear now) and `bulk` for the rest (task
assignments, summaries). A claim takes due alerts before any bulk delivery, however many bulk
ones have waited longer, and can be limited to one lane, so a deliverer can keep a sender for
alerts alone (`duly.notify.deliverer`).

A claim counts an attempt, and `attempts` is the claim's fencing token: an outcome is recorded
only while the row is still pending with the attempt number the claim gave it, so a deliverer
whose lease ran out (and whose row another deliverer took) cannot overwrite the newer state.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal, cast

from sqlalchemy import CursorResult, bindparam, update
from sqlmodel import Session, col, select

from duly.store.crud import insert_if_absent
from duly.store.models import Delivery, UserChannel
from duly.store.types import utc_now

SUBJECT_LIMIT = 200  # characters of a subject; longer ones end with an ellipsis

Lane = Literal["alert", "bulk"]
LANES: tuple[Lane, ...] = ("alert", "bulk")  # the order claims take them in


@dataclass(frozen=True)
class Outgoing:
    """A claimed delivery, ready to send: the row's content and where its channel points now.

    Attributes:
        id: The delivery row's id.
        key: The dedupe key receivers see (`Idempotency-Key`, `X-Duly-Idempotency-Key`).
        user_id: Who it is for.
        channel: email, slack or webhook.
        kind: What happened: task.assigned, alert.breach, ...
        lane: alert or bulk (`lane_of(kind)`).
        subject: One line (the email subject).
        body: Plain text.
        payload: The JSON document an HTTP channel posts.
        attempt: This send's number, 1 for the first.
        target: The address or URL from org.yaml; None when the user no longer has the channel.
        secret_env: The environment variable with a webhook's signing secret, if any.
    """

    id: int
    key: str
    user_id: str
    channel: str
    kind: str
    subject: str
    body: str
    payload: dict[str, Any]
    attempt: int
    target: str | None
    secret_env: str | None = None
    lane: Lane = "bulk"


_CHANNELS = (
    select(UserChannel.channel)
    .where(UserChannel.user_id == bindparam("user"))
    .order_by(col(UserChannel.channel))
)  # asked for every task and alert: built once


def channels_of(session: Session, user: str) -> list[str]:
    """The external channels `user` has in org.yaml (email, slack, webhook), by name."""
    return list(session.exec(_CHANNELS, params={"user": user}).all())


def lane_of(kind: str) -> Lane:
    """The lane of a notification of `kind`: every alert (`alert.*`) before everything else."""
    return "alert" if kind.startswith("alert.") else "bulk"


def one_line(text: str, limit: int = SUBJECT_LIMIT) -> str:
    """`text` with its whitespace runs (newlines too) made single spaces, at most `limit` long."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def slack_text(text: str) -> str:
    """Escape the three characters Slack reads as markup, so a title shows as typed."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def enqueue(
    *,
    session: Session,
    key: str,
    user: str,
    kind: str,
    subject: str,
    body: str,
    payload: dict[str, Any] | None = None,
    html: str | None = None,
    slack: dict[str, Any] | None = None,
    channels: Sequence[str] | None = None,
) -> list[str]:
    """Queue one notification for each external channel `user` has in org.yaml, once.

    In-app needs no delivery: the alert and task rows are the in-app inbox. Call this in the
    transaction that writes what the notification tells about.

    Args:
        session: The caller's session and transaction.
        key: The notification's own key (an alert's key, say); each delivery's key is
            `<key>:<channel>`.
        user: The user id it is for.
        kind: What happened, e.g. `task.assigned` or `alert.breach`.
        subject: One line; newlines are folded.
        body: Plain text (sent as text everywhere, never as markup).
        payload: Structured details for the JSON webhook (under `data`).
        html: An HTML rendering for email, sent beside the text; only for HTML duly made
            itself with every value escaped (`duly.notify.render.html`).
        slack: The Slack message (`duly.notify.render.slack`, values already escaped);
            unset, Slack gets `body` as escaped text.
        channels: `user`'s channels (`channels_of`), when the caller has read them already.

    Returns:
        The channels a delivery was queued on by this call (none when a retry finds them).
    """
    subject = one_line(subject)
    if channels is None:
        channels = channels_of(session, user)
    now = utc_now()
    queued = []
    for channel in channels:
        delivery_key = f"{key}:{channel}"
        document: dict[str, Any] = {}
        if channel == "email" and html:
            document = {"html": html}
        elif channel == "slack":
            document = slack if slack is not None else {"text": slack_text(body)}
        elif channel == "webhook":
            document = {
                "id": delivery_key,
                "event": kind,
                "user": user,
                "subject": subject,
                "text": body,
                "data": payload or {},
            }
        row = Delivery(
            key=delivery_key,
            user_id=user,
            channel=channel,
            kind=kind,
            lane=lane_of(kind),
            subject=subject,
            body=body,
            # A JSON round trip: datetimes in `payload` are stored as the ISO text that is sent
            payload=json.loads(json.dumps(document, default=str)),
            next_attempt_at=now,
            created_at=now,
        )
        if insert_if_absent(session=session, row=row):
            queued.append(channel)
    return queued


def has_due(*, session: Session, now: datetime, lanes: Sequence[Lane] = LANES) -> bool:
    """Whether any pending delivery in `lanes` is due: a read that takes no write lock."""
    due = session.exec(
        select(Delivery.id)
        .where(
            Delivery.status == "pending",
            col(Delivery.lane).in_(lanes),
            col(Delivery.next_attempt_at) <= now,
        )
        .limit(1)
    ).first()
    return due is not None


def claim(
    *,
    session: Session,
    now: datetime,
    lease: timedelta,
    limit: int,
    lanes: Sequence[Lane] = LANES,
) -> list[Outgoing]:
    """Take up to `limit` due deliveries for this deliverer: alerts first, then oldest due first.

    The lanes are taken in `LANES` order, each oldest due first, until `limit` are taken: a
    due alert is never left for a bulk delivery, however long that one waited. `lanes` limits
    the claim to some of them (a sender for alerts alone, say).

    Each is counted as an attempt and reserved for `lease`: its `next_attempt_at` moves to
    `now + lease`, so no other deliverer takes it until then (if this one dies, another sends
    it once the lease ends). PostgreSQL locks the rows with `FOR UPDATE SKIP LOCKED`, so
    concurrent deliverers take different rows; SQLite has no row locks, and the caller's
    `BEGIN IMMEDIATE` (`write_session`) makes claims take turns instead.
    """
    rows: list[Delivery] = []
    for lane in (lane for lane in LANES if lane in lanes):
        if len(rows) >= limit:
            break
        rows += session.exec(
            select(Delivery)
            .where(
                Delivery.status == "pending",
                Delivery.lane == lane,
                col(Delivery.next_attempt_at) <= now,
            )
            .order_by(col(Delivery.next_attempt_at), col(Delivery.id))
            .limit(limit - len(rows))
            .with_for_update(skip_locked=True)
        ).all()
    if not rows:
        return []
    users = {row.user_id for row in rows}
    targets = {
        (channel.user_id, channel.channel): channel
        for channel in session.exec(select(UserChannel).where(col(UserChannel.user_id).in_(users)))
    }
    claimed = []
    for row in rows:
        assert row.id is not None  # stored rows have their id
        row.attempts += 1
        row.next_attempt_at = now + lease
        session.add(row)
        target = targets.get((row.user_id, row.channel))
        claimed.append(
            Outgoing(
                id=row.id,
                key=row.key,
                user_id=row.user_id,
                channel=row.channel,
                kind=row.kind,
                subject=row.subject,
                body=row.body,
                payload=dict(row.payload),
                attempt=row.attempts,
                target=target.target if target else None,
                secret_env=target.secret_env if target else None,
                lane=cast(Lane, row.lane),
            )
        )
    return claimed


def _settle(session: Session, item: Outgoing, **values: Any) -> bool:
    result = session.exec(
        update(Delivery)
        .where(
            col(Delivery.id) == item.id,
            col(Delivery.attempts) == item.attempt,
            col(Delivery.status) == "pending",
        )
        .values(**values)
    )
    return cast(CursorResult[Any], result).rowcount == 1


def mark_sent(*, session: Session, item: Outgoing, now: datetime) -> bool:
    """Record that `item` was sent; False when its claim was lost (the row moved on)."""
    return _settle(session, item, status="sent", sent_at=now, last_error=None)


def mark_retry(*, session: Session, item: Outgoing, error: str, retry_at: datetime) -> bool:
    """Record a failed attempt and when to try again; False when its claim was lost."""
    return _settle(session, item, last_error=error, next_attempt_at=retry_at)


def mark_failed(*, session: Session, item: Outgoing, error: str) -> bool:
    """Record that `item` will not be tried again; False when its claim was lost."""
    return _settle(session, item, status="failed", last_error=error)


def requeue_failed(*, session: Session, user: str | None = None) -> int:
    """Give failed deliveries (all, or one user's) a fresh set of attempts, due now.

    For after a channel's outage or a fix in org.yaml; returns how many were requeued.
    """
    statement = update(Delivery).where(col(Delivery.status) == "failed")
    if user is not None:
        statement = statement.where(col(Delivery.user_id) == user)
    result = session.exec(statement.values(status="pending", attempts=0, next_attempt_at=utc_now()))
    return cast(CursorResult[Any], result).rowcount
