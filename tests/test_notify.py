"""Notifications end to end: activities queue them, deliverers send them to real receivers.

The receivers are real: an aiosmtpd SMTP server and an HTTP server on 127.0.0.1 that answers
500 or hangs when told to, and that keeps each notification once by its `Idempotency-Key`, as
receivers are asked to. Backoffs and leases are fractions of a second, so nothing waits long.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from conftest import Inbox, free_port
from sqlalchemy import Engine
from sqlmodel import select

from activities.messages import (
    EscalateInput,
    FailureAlertInput,
    OpenTaskInput,
    StartInstanceInput,
)
from activities.process import ProcessActivities
from duly.language.model import OrgSpec
from duly.notify import (
    Deliverer,
    DeliveryPolicy,
    delivering,
    enqueue,
    requeue_failed,
)
from duly.notify.channels import email_message
from duly.notify.outbox import Outgoing
from duly.settings import Settings
from duly.signing import verify
from duly.simulate.runner import without_channels
from duly.store.crud import sync_org
from duly.store.db import SessionFactory, session_factory, write_session
from duly.store.models import Alert, Delivery, UserChannel

SECRET_ENV = "DULY_TEST_NOTIFY_SECRET"
INSTANCE = "quote-follow-up/Q-1"
T0 = datetime(2026, 11, 18, 14, 0, tzinfo=UTC)
DUE = datetime(2026, 11, 20, 22, 0, tzinfo=UTC)  # 17:00 in New York
# Quick polls and retries; a send timeout and lease far beyond a loaded machine's slowest send,
# so that only the tests about timeouts and leases (which set their own) ever meet them.
FAST = DeliveryPolicy(
    batch_size=10,
    poll_interval=0.02,
    alert_poll_interval=0.02,
    lease=60.0,
    send_timeout=10.0,
    first_retry=0.05,
    max_retry=0.2,
    max_attempts=20,
)


# --- a real HTTP receiver --------------------------------------------------------------------


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def key(self) -> str:
        return self.headers["Idempotency-Key"]

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every request; keeps each notification once by key (what a receiver should do).

    `faults[path]` lists what the next requests to `path` meet: "500" (an error answer,
    nothing kept), "hang" (kept, but answered after `hang_seconds`, past the sender's
    timeout: the sender can't know it arrived) or "hold" (kept, and answered once `release`
    is set: a channel that stalls until the test says).
    """

    url: str = ""
    hang_seconds: float = 1.0
    requests: list[Request] = field(default_factory=list)
    kept: dict[str, Request] = field(default_factory=dict)
    faults: dict[str, list[str]] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    held: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, request: Request) -> int:
        with self.lock:
            self.requests.append(request)
            faults = self.faults.get(request.path, [])
            fault = faults.pop(0) if faults else None
            if fault == "500":
                return 500
            self.kept.setdefault(request.key, request)
            self.held += fault == "hold"
        if fault == "hang":
            time.sleep(self.hang_seconds)
        if fault == "hold":
            self.release.wait(timeout=60)
        return 200

    def to(self, path: str) -> list[Request]:
        with self.lock:
            return [request for request in self.requests if request.path == path]

    def kept_at(self, path: str) -> list[Request]:
        with self.lock:
            return [request for request in self.kept.values() if request.path == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    received = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            status = received.handle(Request(self.path, dict(self.headers), body, time.monotonic()))
            try:
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok" if status == 200 else b"receiver down for maintenance")
            except OSError:
                pass  # the sender gave up waiting

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    received.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield received
    received.release.set()  # a request still held must not keep the server from stopping
    server.shutdown()
    server.server_close()
    thread.join()


# --- the org, the database, the activities -----------------------------------------------------


def org_for(url: str, *, ana_channels: dict[str, Any] | None = None) -> OrgSpec:
    """Reps and managers whose channels point at the receiver."""
    ana = ana_channels or {
        "email": "ana@example.com",
        "slack": f"{url}/slack/ana",
        "webhook": {"url": f"{url}/hooks/ana", "secret_env": SECRET_ENV},
    }
    return OrgSpec.model_validate(
        {
            "users": {
                "maria": {
                    "name": "Maria Lopez",
                    "role": "manager",
                    "channels": {"email": "maria@example.com", "slack": f"{url}/slack/maria"},
                },
                "omar": {
                    "name": "Omar Haddad",
                    "role": "manager",
                    "channels": {"webhook": {"url": f"{url}/hooks/omar"}},
                },
                "ana": {"name": "Ana Silva", "channels": ana},
                "ben": {"name": "Ben Carter"},  # in-app only
            },
            "teams": {"inbound-sales": {"manager": "maria", "members": ["ana", "ben"]}},
        }
    )


@pytest.fixture
def sessions(engine: Engine, receiver: Receiver, monkeypatch) -> SessionFactory:
    monkeypatch.setenv(SECRET_ENV, "s3cret")
    sessions = session_factory(engine)
    with write_session(sessions) as session:
        sync_org(session=session, org=org_for(receiver.url))
    return sessions


@pytest.fixture
def acts(sessions: SessionFactory) -> ProcessActivities:
    activities = ProcessActivities(sessions, Settings())
    activities.start_instance(
        StartInstanceInput(
            instance_id=INSTANCE,
            process="quote-follow-up",
            version=1,
            hash="a" * 64,
            business_key="Q-1",
            compiled_json=json.dumps({"calendar": {"timezone": "America/New_York"}}),
            started_at=T0,
        )
    )
    return activities


def open_input(title: str = "Call Lee Park about quote Q-1", **changes: Any) -> OpenTaskInput:
    values: dict[str, Any] = {
        "task_id": f"{INSTANCE}/call-customer/1",
        "instance_id": INSTANCE,
        "process": "quote-follow-up",
        "step": "call-customer",
        "visit": 1,
        "title": title,
        "assign": "user:ana",
        "team": "inbound-sales",
        "outcomes": ["reached", "lost"],
        "opened_at": T0,
        "due_at": DUE,
        **changes,
    }
    return OpenTaskInput(**values)


def breach_input(**changes: Any) -> EscalateInput:
    values: dict[str, Any] = {
        "alert_key": f"{INSTANCE}/call-customer/1/1",
        "instance_id": INSTANCE,
        "process": "quote-follow-up",
        "step": "call-customer",
        "clock": "call-customer",
        "rung": 1,
        "at_percent": 100.0,
        "level": "breach",
        "notify": "manager",
        "task_id": f"{INSTANCE}/call-customer/1",
        "team": "inbound-sales",
        "due_at": DUE,
        "fired_at": DUE,
        "title": "Call Lee Park about quote Q-1",
        **changes,
    }
    return EscalateInput(**values)


def deliveries(sessions: SessionFactory) -> list[Delivery]:
    with sessions() as session:
        return list(session.exec(select(Delivery).order_by(Delivery.key)))


async def until(check: Callable[[], Any], *, timeout: float = 10.0, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.02)
    return result


def all_settled(sessions: SessionFactory) -> bool:
    return all(row.status != "pending" for row in deliveries(sessions))


async def deliver_all(
    sessions: SessionFactory, settings: Settings, policy: DeliveryPolicy = FAST
) -> list[Delivery]:
    """Run a deliverer until nothing is pending; the deliveries as they ended."""
    stop = asyncio.Event()
    running = asyncio.create_task(Deliverer(sessions, settings, policy=policy).run(stop))
    try:
        await until(lambda: all_settled(sessions), what="every delivery to be sent or failed")
    finally:
        stop.set()
        await running
    return deliveries(sessions)


def mails(inbox: Inbox) -> list[Message]:
    return [email.message_from_bytes(envelope.original_content) for envelope in inbox.envelopes]


def parts(mail: Message) -> tuple[str, str]:
    """The text/plain and text/html parts of a multipart/alternative email."""
    assert mail.get_content_type() == "multipart/alternative"
    found = {
        part.get_content_type(): part.get_payload(decode=True).decode()
        for part in mail.walk()
        if not part.is_multipart()
    }
    assert set(found) == {"text/plain", "text/html"}
    return found["text/plain"], found["text/html"]


# --- what is queued, and when ------------------------------------------------------------------


def test_sync_org_keeps_each_users_channels_as_in_org_yaml(sessions, receiver) -> None:
    def channels() -> dict[tuple[str, str], tuple[str, str | None]]:
        with sessions() as session:
            rows = session.exec(select(UserChannel))
            return {(r.user_id, r.channel): (r.target, r.secret_env) for r in rows}

    assert channels() == {
        ("maria", "email"): ("maria@example.com", None),
        ("maria", "slack"): (f"{receiver.url}/slack/maria", None),
        ("omar", "webhook"): (f"{receiver.url}/hooks/omar", None),
        ("ana", "email"): ("ana@example.com", None),
        ("ana", "slack"): (f"{receiver.url}/slack/ana", None),
        ("ana", "webhook"): (f"{receiver.url}/hooks/ana", SECRET_ENV),
    }
    changed = org_for(receiver.url, ana_channels={"email": "ana.silva@example.com"}).model_dump()
    del changed["users"]["omar"]  # omar leaves
    changed = OrgSpec.model_validate(changed)
    with write_session(sessions) as session:
        sync_org(session=session, org=changed)
    after = channels()
    assert after[("ana", "email")] == ("ana.silva@example.com", None)
    assert not {("ana", "slack"), ("ana", "webhook"), ("omar", "webhook")} & set(after)


def test_an_assignment_queues_one_delivery_per_external_channel_and_none_for_in_app_only(
    acts, sessions
) -> None:
    acts.open_task(open_input())
    acts.open_task(open_input(task_id=f"{INSTANCE}/other/1", step="other", assign="user:ben"))
    rows = deliveries(sessions)
    assert [(row.key, row.user_id, row.kind) for row in rows] == [
        (f"{INSTANCE}/call-customer/1:assigned:ana:{channel}", "ana", "task.assigned")
        for channel in ("email", "slack", "webhook")
    ]
    assert {row.status for row in rows} == {"pending"}


def test_a_simulated_runs_store_has_no_channels_so_it_writes_alerts_but_queues_nothing(
    acts, sessions, engine
) -> None:
    without_channels(engine)  # as `duly simulate` leaves a run's store
    opened = acts.open_task(open_input())
    acts.escalate(breach_input())
    assert opened.assignee == "ana"
    with sessions() as session:
        assert [a.recipient for a in session.exec(select(Alert)).all()] == ["maria"]
    assert deliveries(sessions) == []


def test_activities_retried_twice_queue_each_notification_once(acts, sessions) -> None:
    for _ in range(3):
        acts.open_task(open_input())
        acts.escalate(breach_input())
        acts.escalate(
            breach_input(
                alert_key=f"{INSTANCE}/call-customer/1/2", rung=2, notify=None, reassign="manager"
            )
        )
        acts.failure_alert(
            FailureAlertInput(
                alert_key=f"{INSTANCE}/send-summary/1/failed",
                instance_id=INSTANCE,
                process="quote-follow-up",
                step="send-summary",
                team="inbound-sales",
                message="SMTP refused",
                fired_at=DUE,
            )
        )
    keys = [row.key for row in deliveries(sessions)]
    assert keys == sorted(
        [f"{INSTANCE}/call-customer/1:assigned:ana:{c}" for c in ("email", "slack", "webhook")]
        + [f"{INSTANCE}/call-customer/1/1:maria:{c}" for c in ("email", "slack")]
        + [f"{INSTANCE}/call-customer/1/2:maria:{c}" for c in ("email", "slack")]
        # ana, who lost the task to the reassignment, is told: once too
        + [f"{INSTANCE}/call-customer/1/2/released:ana:{c}" for c in ("email", "slack", "webhook")]
        + [f"{INSTANCE}/send-summary/1/failed:maria:{c}" for c in ("email", "slack")]
    )
    kinds = {row.key.rsplit(":", 2)[0]: row.kind for row in deliveries(sessions)}
    assert kinds[f"{INSTANCE}/call-customer/1/1"] == "alert.breach"
    assert kinds[f"{INSTANCE}/call-customer/1/2"] == "alert.escalation"
    assert kinds[f"{INSTANCE}/send-summary/1/failed"] == "alert.failure"
    assert kinds[f"{INSTANCE}/call-customer/1/2/released"] == "task.reassigned"


# --- what arrives --------------------------------------------------------------------------------


async def test_a_reps_assignment_arrives_on_each_channel_naming_the_task_and_its_due_time(
    acts, sessions, receiver, smtp
) -> None:
    settings, inbox = smtp
    acts.open_task(open_input())
    rows = await deliver_all(sessions, settings)
    assert {row.status for row in rows} == {"sent"}
    assert all(row.sent_at is not None and row.attempts == 1 for row in rows)

    (mail,) = mails(inbox)
    assert mail["To"] == "ana@example.com"
    assert mail["Subject"] == "New task: Call Lee Park about quote Q-1 (due 2026-11-20 17:00 EST)"
    assert mail["X-Duly-Idempotency-Key"] == f"{INSTANCE}/call-customer/1:assigned:ana:email"
    text, html = parts(mail)
    assert "Call Lee Park about quote Q-1" in text and "2026-11-20 17:00 EST" in text
    assert "Call Lee Park about quote Q-1" in html and "2026-11-20 17:00 EST" in html

    (slack,) = receiver.to("/slack/ana")
    assert "Call Lee Park about quote Q-1" in slack.json()["text"]
    assert "2026-11-20 17:00 EST" in slack.json()["text"]
    (hook,) = receiver.to("/hooks/ana")
    document = hook.json()
    assert document["event"] == "task.assigned" and document["user"] == "ana"
    assert document["data"]["task"]["title"] == "Call Lee Park about quote Q-1"
    assert datetime.fromisoformat(document["data"]["task"]["due_at"]) == DUE


async def test_a_breach_reaches_the_manager_on_her_channels(acts, sessions, receiver, smtp):
    settings, inbox = smtp
    acts.open_task(open_input())
    acts.escalate(breach_input())
    await deliver_all(sessions, settings)
    manager_mail = [mail for mail in mails(inbox) if mail["To"] == "maria@example.com"]
    (breach,) = manager_mail
    assert breach["Subject"] == "Breach: Call Lee Park about quote Q-1 (due 2026-11-20 17:00 EST)"
    assert breach["X-Duly-Notification"] == "alert.breach"
    (slack,) = receiver.to("/slack/maria")
    assert slack.json()["text"].startswith("Breach: Call Lee Park about quote Q-1")
    assert slack.json()["blocks"][0]["text"]["text"] == "Breach: Call Lee Park about quote Q-1"


async def test_the_webhook_is_signed_with_the_secret_named_by_secret_env(
    acts, sessions, receiver, smtp
) -> None:
    settings, _ = smtp
    acts.open_task(open_input())
    await deliver_all(sessions, settings)
    (hook,) = receiver.to("/hooks/ana")
    timestamp, signature = hook.headers["X-Duly-Timestamp"], hook.headers["X-Duly-Signature"]
    assert signature.startswith("sha256=")
    assert abs(int(timestamp) - time.time()) < 60
    assert verify("s3cret", timestamp, hook.body, signature)
    assert not verify("wrong", timestamp, hook.body, signature)
    assert not verify("s3cret", timestamp, hook.body + b" ", signature)
    assert not verify("s3cret", timestamp, hook.body, signature, now=time.time() + 3600)
    assert hook.key == f"{INSTANCE}/call-customer/1:assigned:ana:webhook"
    assert hook.json()["id"] == hook.key
    assert hook.headers["X-Duly-Event"] == "task.assigned"


async def test_html_and_script_in_a_title_are_sent_as_text(acts, sessions, receiver, smtp):
    settings, inbox = smtp
    title = "<script>alert(1)</script> & <b>Lee</b>"
    acts.open_task(open_input(title=title))
    await deliver_all(sessions, settings)

    (mail,) = mails(inbox)
    text, html = parts(mail)
    assert title in text
    assert "<script>" not in html and "<b>Lee" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;Lee&lt;/b&gt;" in html

    (hook,) = receiver.to("/hooks/ana")
    assert b"<" not in hook.body and b">" not in hook.body and b"&" not in hook.body
    assert hook.json()["data"]["task"]["title"] == title  # the same text, once parsed

    (slack,) = receiver.to("/slack/ana")
    assert b"<script>" not in slack.body
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;Lee&lt;/b&gt;"
    assert escaped in slack.json()["text"]
    fields = [f["text"] for b in slack.json()["blocks"] for f in b.get("fields", [])]
    assert any(escaped in field for field in fields)


# --- channels that are down ----------------------------------------------------------------------


async def test_channels_down_for_a_while_get_each_notification_once_after_they_recover(
    acts, sessions, receiver
) -> None:
    # The SMTP server is not there yet, Slack answers 500 twice, the webhook hangs twice
    receiver.faults = {"/slack/ana": ["500", "500"], "/hooks/ana": ["hang", "hang"]}
    # well past the 1 s send timeout below, which an answer on a loaded machine stays within
    receiver.hang_seconds = 2.5
    inbox, port = Inbox(), free_port()
    settings = Settings(smtp_host="127.0.0.1", smtp_port=port, smtp_from="duly@acme.test")
    started = time.monotonic()
    acts.open_task(open_input())  # the activity never waits on a channel
    assert time.monotonic() - started < 2

    stop = asyncio.Event()
    policy = replace(FAST, send_timeout=1.0)
    running = asyncio.create_task(Deliverer(sessions, settings, policy=policy).run(stop))
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    try:
        await until(
            lambda: len(receiver.to("/slack/ana")) >= 3 and len(receiver.to("/hooks/ana")) >= 3,
            what="Slack and the webhook to be tried three times",
        )
        email_row = next(row for row in deliveries(sessions) if row.channel == "email")
        assert email_row.status == "pending" and email_row.attempts >= 1
        assert "SMTP 127.0.0.1" in (email_row.last_error or "")
        controller.start()  # the mail server comes back
        await until(lambda: all_settled(sessions), what="every delivery to be sent")
        await asyncio.sleep(0.3)  # time for a duplicate to show, if there were one
    finally:
        stop.set()
        await running
        controller.stop()

    rows = {row.channel: row for row in deliveries(sessions)}
    assert {row.status for row in rows.values()} == {"sent"}
    assert rows["slack"].attempts == 3 and rows["webhook"].attempts == 3
    assert rows["email"].attempts >= 2
    assert len(inbox.envelopes) == 1
    # Slack kept it once; the webhook got it three times (two answers came too late), all
    # under one key, so it kept it once too
    assert len(receiver.kept_at("/slack/ana")) == 1
    hooks = receiver.to("/hooks/ana")
    assert len(hooks) == 3 and {request.key for request in hooks} == {rows["webhook"].key}
    assert len(receiver.kept_at("/hooks/ana")) == 1


async def test_after_its_last_attempt_a_delivery_is_failed_with_the_reason_then_requeued(
    acts, sessions, receiver, smtp
) -> None:
    settings, _ = smtp
    receiver.faults = {"/slack/ana": ["500"] * 3}
    acts.open_task(open_input())
    policy = replace(FAST, max_attempts=3)
    rows = {row.channel: row for row in await deliver_all(sessions, settings, policy)}
    assert rows["slack"].status == "failed" and rows["slack"].attempts == 3
    assert "answered 500: receiver down for maintenance" in (rows["slack"].last_error or "")
    assert f"127.0.0.1:{receiver.url.rpartition(':')[2]}" in (rows["slack"].last_error or "")
    assert "/slack/ana" not in (rows["slack"].last_error or "")  # the URL's path is a secret
    assert rows["email"].status == rows["webhook"].status == "sent"

    with write_session(sessions) as session:
        assert requeue_failed(session=session) == 1
    rows = {row.channel: row for row in await deliver_all(sessions, settings, policy)}
    assert rows["slack"].status == "sent"
    assert len(receiver.kept_at("/slack/ana")) == 1


async def test_a_channel_removed_from_org_yaml_fails_its_waiting_deliveries_visibly(
    acts, sessions, receiver, smtp
) -> None:
    settings, _ = smtp
    acts.open_task(open_input())
    with write_session(sessions) as session:
        sync_org(session=session, org=org_for(receiver.url, ana_channels={"email": "a@b.c"}))
    rows = {row.channel: row for row in await deliver_all(sessions, settings)}
    assert rows["slack"].status == "failed"
    assert rows["slack"].last_error == "ana has no slack channel in org.yaml any more"
    assert rows["email"].status == "sent"
    assert receiver.requests == []


async def test_a_missing_webhook_secret_is_retried_and_says_which_variable_to_set(
    acts, sessions, receiver, smtp, monkeypatch
) -> None:
    settings, _ = smtp
    monkeypatch.delenv(SECRET_ENV)
    acts.open_task(open_input())
    stop = asyncio.Event()
    running = asyncio.create_task(Deliverer(sessions, settings, policy=FAST).run(stop))
    try:

        def webhook() -> Delivery:
            return next(row for row in deliveries(sessions) if row.channel == "webhook")

        await until(lambda: webhook().attempts >= 2, what="the webhook to be tried again")
        assert webhook().status == "pending"
        assert f"{SECRET_ENV} (secret_env of ana's webhook" in (webhook().last_error or "")
        assert receiver.to("/hooks/ana") == []  # never sent unsigned
        monkeypatch.setenv(SECRET_ENV, "s3cret")
        await until(lambda: webhook().status == "sent", what="the webhook to be sent")
    finally:
        stop.set()
        await running


# --- alerts before bulk ----------------------------------------------------------------------


def assign_many(acts: ProcessActivities, count: int) -> None:
    """`count` tasks for ana: three bulk notifications each (email, Slack, webhook)."""
    for n in range(count):
        acts.open_task(open_input(task_id=f"{INSTANCE}/call-customer/{n + 1}", visit=n + 1))


def mails_to(inbox: Inbox, address: str) -> list[Message]:
    return [mail for mail in mails(inbox) if mail["To"] == address]


async def test_an_alert_queued_after_many_assignments_is_sent_before_the_rest_of_them(
    acts, sessions, receiver, smtp
) -> None:
    settings, inbox = smtp
    assign_many(acts, 15)  # 45 assignment notifications, all due before the breach
    acts.escalate(breach_input())  # maria's breach: email and Slack
    deliverer = Deliverer(sessions, settings, policy=FAST)
    try:
        assert await deliverer.deliver_due() == FAST.batch_size
    finally:
        await deliverer.aclose()

    # One batch: both of the breach's deliveries went out, with the 8 oldest assignments only
    (breach,) = mails_to(inbox, "maria@example.com")
    assert breach["X-Duly-Notification"] == "alert.breach"
    (slack,) = receiver.to("/slack/maria")
    assert slack.json()["text"].startswith("Breach: ")
    rows = deliveries(sessions)
    assert {row.status for row in rows if row.kind == "alert.breach"} == {"sent"}
    assignments = [row for row in rows if row.kind == "task.assigned"]
    assert len(assignments) == 45
    assert sum(row.status == "sent" for row in assignments) == FAST.batch_size - 2
    assert len(mails_to(inbox, "ana@example.com")) < 15

    await deliver_all(sessions, settings)
    assert len(mails_to(inbox, "ana@example.com")) == 15
    assert len(mails_to(inbox, "maria@example.com")) == 1


async def test_an_alert_is_sent_while_the_bulk_sends_in_hand_are_stalled(
    acts, sessions, receiver, smtp
) -> None:
    settings, inbox = smtp
    receiver.faults = {"/hooks/ana": ["hold"] * 200}  # ana's webhook stalls until released
    assign_many(acts, 60)
    # Sends outlast the test unless released: a breach that waited for them would never come
    policy = replace(FAST, send_timeout=120.0, lease=180.0)
    stop = asyncio.Event()
    running = asyncio.create_task(Deliverer(sessions, settings, policy=policy).run(stop))
    try:
        await until(lambda: receiver.held, what="a batch of assignments to stall on the webhook")
        acts.escalate(breach_input())
        await until(
            lambda: mails_to(inbox, "maria@example.com") and receiver.to("/slack/maria"),
            timeout=60,
            what="the breach to reach maria while the assignments are stalled",
        )
        assert not receiver.release.is_set()
        waiting = [row for row in deliveries(sessions) if row.kind == "task.assigned"]
        assert sum(row.status == "pending" for row in waiting) > len(waiting) // 2
        receiver.release.set()
        await until(lambda: all_settled(sessions), timeout=60, what="the assignments to be sent")
    finally:
        receiver.release.set()
        stop.set()
        await running
    assert {row.status for row in deliveries(sessions)} == {"sent"}
    assert len(mails_to(inbox, "maria@example.com")) == 1
    assert len(mails_to(inbox, "ana@example.com")) == 60


# --- several deliverers, and deliverers that die -----------------------------------------------


def queue_many(sessions: SessionFactory, count: int) -> None:
    with write_session(sessions) as session:
        for n in range(count):
            enqueue(
                session=session,
                key=f"note-{n:03}",
                user="omar",
                kind="alert.warning",
                subject=f"note {n}",
                body=f"note {n}",
            )


async def test_two_deliverers_at_once_never_send_one_delivery_twice(
    engine, sessions, receiver, smtp
) -> None:
    settings, _ = smtp
    queue_many(sessions, 40)
    policy = replace(FAST, batch_size=3, poll_interval=0.01)
    stop = asyncio.Event()
    # Two deliverers, each with its own connection pool, as two workers would have
    first = Deliverer(sessions, settings, policy=policy)
    second = Deliverer(session_factory(engine), settings, policy=policy)
    claimed: dict[str, list[int]] = {"first": [], "second": []}

    def counting(name: str, deliverer: Deliverer) -> None:
        claim = deliverer._claim

        def counted(*args: Any) -> list:
            items = claim(*args)
            claimed[name] += [item.id for item in items]
            return items

        deliverer._claim = counted  # type: ignore[method-assign]

    counting("first", first)
    counting("second", second)
    running = [asyncio.create_task(d.run(stop)) for d in (first, second)]
    try:
        await until(lambda: all_settled(sessions), timeout=60, what="all 40 to be sent")
    finally:
        stop.set()
        await asyncio.gather(*running)
    # Delivery is at least once: on a loaded machine a send can outlast its timeout and be
    # sent again with the same idempotency key, which the receiver uses to drop the copy. What
    # must hold is one key per delivery, every delivery sent, and no delivery claimed by both.
    keys = {request.key for request in receiver.to("/hooks/omar")}
    rows = deliveries(sessions)
    assert len(rows) == 40 and {row.status for row in rows} == {"sent"}
    assert len(keys) == 40
    assert claimed["first"] and claimed["second"], "both deliverers should have taken some"
    assert not set(claimed["first"]) & set(claimed["second"])


async def test_a_deliverer_killed_mid_send_is_taken_over_after_its_lease_and_sent_once(
    sessions, receiver, smtp
) -> None:
    settings, _ = smtp
    queue_many(sessions, 1)
    receiver.faults = {"/hooks/omar": ["hang"]}
    receiver.hang_seconds = 1.5
    policy = replace(FAST, lease=1.0, send_timeout=0.9)
    killed = asyncio.create_task(Deliverer(sessions, settings, policy=policy).run(asyncio.Event()))
    await until(lambda: receiver.to("/hooks/omar"), what="the first send to arrive")
    killed.cancel()  # the worker dies mid-send: the row stays claimed
    with pytest.raises(asyncio.CancelledError):
        await killed
    (row,) = deliveries(sessions)
    assert row.status == "pending" and row.attempts == 1
    # the claim moved the row's next attempt to the end of its lease: on the monotonic clock
    # the receiver stamps requests with, that is
    lease_ends = time.monotonic() + (row.next_attempt_at - datetime.now(UTC)).total_seconds()

    stop = asyncio.Event()
    restarted = asyncio.create_task(Deliverer(sessions, settings, policy=policy).run(stop))
    try:
        await until(lambda: all_settled(sessions), what="the restarted deliverer to send it")
    finally:
        stop.set()
        await restarted
    first, second = receiver.to("/hooks/omar")
    assert second.at >= lease_ends  # taken over only once the lease ended
    assert first.key == second.key
    assert len(receiver.kept_at("/hooks/omar")) == 1
    (row,) = deliveries(sessions)
    assert row.status == "sent" and row.attempts == 2


async def test_a_late_outcome_from_a_deliverer_whose_lease_ended_changes_nothing(sessions):
    from duly.notify import outbox

    queue_many(sessions, 1)
    now = datetime.now(UTC)
    with write_session(sessions) as session:
        (stale,) = outbox.claim(session=session, now=now, lease=timedelta(0), limit=5)
    with write_session(sessions) as session:
        (fresh,) = outbox.claim(session=session, now=now, lease=timedelta(60), limit=5)
    with write_session(sessions) as session:
        assert not outbox.mark_retry(session=session, item=stale, error="late", retry_at=now)
        assert outbox.mark_sent(session=session, item=fresh, now=now)
    (row,) = deliveries(sessions)
    assert row.status == "sent" and row.attempts == 2 and row.last_error is None


# --- running beside the worker -------------------------------------------------------------------


async def test_delivering_sends_in_the_background_until_its_block_ends(tmp_path, smtp) -> None:
    from duly.store.db import create_all, make_engine

    mail, inbox = smtp
    settings = mail.model_copy(update={"database_url": f"sqlite:///{tmp_path / 'duly.db'}"})
    db = make_engine(settings.database_url)
    create_all(db)
    sessions = session_factory(db)
    org = OrgSpec.model_validate({"users": {"ana": {"name": "Ana", "channels": {"email": "a@x"}}}})
    with write_session(sessions) as session:
        sync_org(session=session, org=org)
        enqueue(session=session, key="hello", user="ana", kind="test", subject="Hi", body="Hi")
    async with delivering(settings, policy=FAST):
        await until(lambda: inbox.envelopes, what="the email")
    assert [row.status for row in deliveries(sessions)] == ["sent"]
    db.dispose()


def test_an_email_encodes_names_subjects_and_bodies_that_are_not_ascii() -> None:
    item = Outgoing(
        id=1,
        key="lead-follow-up/L-1/step:first-call/1/1:maria",
        user_id="maria",
        channel="email",
        kind="alert.breach",
        subject="Breach: Call Zoë Ångström (Müller GmbH) about the renewal — " + "long " * 12,
        body="María,\n\nZoë's call is late.\n" + "x" * 120 + "\n",
        payload={"html": "<p>Zoë&#x27;s call</p>"},
        attempt=1,
        target="maria@example.com",
    )
    settings = Settings(smtp_from="Équipe duly <duly@example.com>")
    raw = email_message(item, settings).as_bytes()
    assert raw.isascii()  # what an SMTP server without SMTPUTF8 takes
    mail = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(mail["Subject"]) == " ".join(item.subject.split())
    assert str(mail["From"]) == "Équipe duly <duly@example.com>"
    assert str(mail["To"]) == "maria@example.com"
    assert mail["Message-ID"].endswith("@example.com>")
    assert mail["X-Duly-Idempotency-Key"] == item.key
    text, html = parts(email.message_from_bytes(raw))
    assert (text, html) == (item.body, item.payload["html"])


def test_backoff_doubles_from_the_first_retry_up_to_the_cap_with_jitter() -> None:
    policy = DeliveryPolicy()
    delays = [policy.backoff(n, rand=lambda: 0.0) for n in range(1, 10)]
    assert delays == [2, 4, 8, 16, 32, 64, 128, 256, 300]
    assert policy.backoff(100, rand=lambda: 0.0) == 300
    assert policy.backoff(1, rand=lambda: 1.0) == pytest.approx(1.6)
    with pytest.raises(ValueError, match="lease"):
        DeliveryPolicy(lease=5, send_timeout=10)
