"""The deliverer: an asyncio loop that sends the outbox's due deliveries, with retries.

It runs beside the Temporal worker (`duly.worker.run_worker`), never inside a workflow or an
activity, so a channel that is down slows nothing but its own notifications. Each cycle it
claims a batch of due deliveries under a lease (`duly.notify.outbox.claim`), sends them
concurrently, and records each outcome as soon as it is known:

- sent: marked `sent`;
- failed: tried again after an exponential backoff with jitter (`first_retry`, doubling, at
  most `max_retry`), and after `max_attempts` marked `failed` with its last error and logged
  as an error: kept for people to see and requeue, never dropped silently;
- the deliverer died (killed, cancelled, machine lost): the lease runs out and any deliverer
  sends it again.

Alerts go first, twice over. Every batch takes due alerts before bulk notifications (task
assignments, summaries), however many of those waited longer; and a second sender beside the
first claims alerts alone, looking every `alert_poll_interval`, so an alert never waits for a
batch of bulk sends to finish (a slow mail server, thousands queued by an import).

Delivery is at least once: a crash between a send and its record sends it again. Every send
carries the delivery's key (`Idempotency-Key`, `X-Duly-Idempotency-Key` and a Message-ID
derived from it), so a receiver that remembers keys sees each notification exactly once.
Several deliverers (workers) may run on one database: a claim takes each delivery for one of
them (PostgreSQL `SKIP LOCKED`, SQLite `BEGIN IMMEDIATE`), and a lease longer than a send
keeps it theirs. Their clocks should agree to within a small part of the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

import httpx
import structlog

from duly import metrics
from duly.notify import outbox
from duly.notify.channels import ChannelContext, DeliveryError, send
from duly.notify.outbox import LANES, Lane, Outgoing
from duly.notify.slack.updates import refresh_slack
from duly.settings import Settings
from duly.store.db import SessionFactory, make_engine, session_factory, write_session
from duly.store.types import utc_now

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DeliveryPolicy:
    """How the deliverer paces itself; times are in seconds.

    Attributes:
        batch_size: Deliveries claimed (and sent concurrently) per cycle, by each sender.
        poll_interval: Pause between looks at the outbox when nothing was due.
        alert_poll_interval: The same for the sender of alerts alone: how long a new alert
            may wait for it at most, while the other sender is busy.
        lease: How long a claimed delivery is reserved for the deliverer that claimed it; must
            be longer than `send_timeout`, or a slow send may be repeated by another.
        send_timeout: How long one send may take before it counts as failed.
        first_retry: Delay before the second attempt; each further one doubles it.
        max_retry: The longest delay between attempts.
        jitter: Up to this fraction is taken off each delay at random, so deliveries that
            failed together don't all come back together.
        max_attempts: Attempts before a delivery is marked `failed`.
    """

    batch_size: int = 20
    poll_interval: float = 1.0
    alert_poll_interval: float = 0.2
    lease: float = 60.0
    send_timeout: float = 10.0
    first_retry: float = 2.0
    max_retry: float = 300.0
    jitter: float = 0.2
    max_attempts: int = 20

    def __post_init__(self) -> None:
        """Refuse a policy whose lease could expire during a send."""
        if self.lease <= self.send_timeout:
            raise ValueError(
                f"lease ({self.lease:g} s) must be longer than send_timeout "
                f"({self.send_timeout:g} s)"
            )
        if self.max_attempts < 1 or self.batch_size < 1:
            raise ValueError("max_attempts and batch_size must be at least 1")

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1 for the first)."""
        delay = min(self.max_retry, self.first_retry * 2.0 ** min(attempt - 1, 30))
        return float(delay * (1 - self.jitter * rand()))


class Deliverer:
    """Sends the outbox's due deliveries until stopped; see the module docstring.

    Args:
        sessions: Sessions on duly's database.
        settings: duly's settings (SMTP).
        policy: Batch size, lease, timeouts and backoff.
        http: The HTTP client for webhooks; the deliverer makes (and closes) its own if not
            given.
    """

    def __init__(
        self,
        sessions: SessionFactory,
        settings: Settings,
        *,
        policy: DeliveryPolicy | None = None,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.sessions = sessions
        self.policy = policy or DeliveryPolicy()
        self._owns_http = http is None
        self.http = http or httpx.AsyncClient(follow_redirects=False)
        self.context = ChannelContext(settings, self.http, self.policy.send_timeout, sessions)

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set, then finish the batches in hand and return.

        Two senders run: one for every lane (alerts first), one for alerts alone. A failing
        cycle (the database unreachable, say) is logged and tried again after its pause; only
        cancellation ends them otherwise.
        """
        _log.info("deliverer_running")
        try:
            async with asyncio.TaskGroup() as senders:
                senders.create_task(self._repeat(self.deliver_due, self.policy.poll_interval, stop))
                senders.create_task(
                    self._repeat(self.deliver_alerts, self.policy.alert_poll_interval, stop)
                )
        finally:
            await self.aclose()
        _log.info("deliverer_stopped")

    async def _repeat(
        self, cycle: Callable[[], Awaitable[int]], pause: float, stop: asyncio.Event
    ) -> None:
        while not stop.is_set():
            try:
                handled = await cycle()
            except Exception:
                _log.exception("deliverer_cycle_failed")
                handled = 0
            if handled < self.policy.batch_size:  # a full batch: more may be waiting
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)

    async def aclose(self) -> None:
        """End the SMTP sessions kept open, and close the HTTP client if the deliverer made it."""
        await asyncio.to_thread(self.context.smtp.close)
        if self._owns_http:
            await self.http.aclose()

    async def deliver_due(self) -> int:
        """Claim one batch of due deliveries, alerts first, and send them; returns how many.

        Posted Slack messages are then brought up to date (`duly.notify.slack.updates`).
        """
        handled = await self._send_batch(LANES)
        await refresh_slack(self.sessions, self.context.settings)
        return handled

    async def deliver_alerts(self) -> int:
        """Claim one batch of due alerts alone and send them; returns how many were claimed."""
        return await self._send_batch(("alert",))

    async def _send_batch(self, lanes: Sequence[Lane]) -> int:
        claimed = await asyncio.to_thread(self._claim, lanes)
        outcomes = await asyncio.gather(
            *(self._deliver(item) for item in claimed), return_exceptions=True
        )
        for item, outcome in zip(claimed, outcomes, strict=True):
            if isinstance(outcome, Exception):
                # Its outcome was not recorded (the database failed?): the lease ends, it goes again
                _log.error("notification_not_recorded", delivery=item.key, exc_info=outcome)
            elif isinstance(outcome, BaseException):
                raise outcome
        return len(claimed)

    def _claim(self, lanes: Sequence[Lane]) -> list[Outgoing]:
        now = utc_now()
        with self.sessions() as session:
            # A read first: an idle outbox never takes SQLite's write lock from activities
            if not outbox.has_due(session=session, now=now, lanes=lanes):
                return []
        with write_session(self.sessions) as session:
            return outbox.claim(
                session=session,
                now=now,
                lease=timedelta(seconds=self.policy.lease),
                limit=self.policy.batch_size,
                lanes=lanes,
            )

    async def _deliver(self, item: Outgoing) -> None:
        log = _log.bind(
            delivery=item.key,
            user=item.user_id,
            channel=item.channel,
            lane=item.lane,
            attempt=item.attempt,
        )
        if item.target is None:
            error = f"{item.user_id} has no {item.channel} channel in org.yaml any more"
            await self._record(outbox.mark_failed, item, error=error)
            metrics.NOTIFICATIONS_FAILED.labels(channel=item.channel, kind=item.kind).inc()
            log.error("notification_failed", error=error)
            return
        try:
            async with asyncio.timeout(self.policy.send_timeout):
                detail = await send(item, self.context)
        except (DeliveryError, TimeoutError) as exc:
            timeout = self.policy.send_timeout
            error = str(exc) or f"{item.channel}: no answer within {timeout:g} s"
        except Exception as exc:  # a bug in a sender must not stop the others
            log.exception("notification_send_crashed")
            error = f"{type(exc).__name__}: {exc}"
        else:
            if not await self._record(outbox.mark_sent, item, now=utc_now()):
                log.warning("notification_sent_after_its_lease_ended", detail=detail)
            else:
                log.info("notification_sent", detail=detail)
            metrics.NOTIFICATIONS_DELIVERED.labels(channel=item.channel, kind=item.kind).inc()
            return
        if item.attempt >= self.policy.max_attempts:
            await self._record(outbox.mark_failed, item, error=error)
            metrics.NOTIFICATIONS_FAILED.labels(channel=item.channel, kind=item.kind).inc()
            log.error("notification_failed", error=error, attempts=item.attempt)
            return
        delay = self.policy.backoff(item.attempt)
        retry_at = utc_now() + timedelta(seconds=delay)
        await self._record(outbox.mark_retry, item, error=error, retry_at=retry_at)
        metrics.NOTIFICATION_RETRIES.labels(channel=item.channel, kind=item.kind).inc()
        log.warning("notification_will_retry", error=error, retry_in=round(delay, 2))

    async def _record(self, mark: Callable[..., bool], item: Outgoing, **values: object) -> bool:
        def write() -> bool:
            with write_session(self.sessions) as session:
                return mark(session=session, item=item, **values)

        return await asyncio.to_thread(write)


async def run_deliverer(
    settings: Settings, stop: asyncio.Event, *, policy: DeliveryPolicy | None = None
) -> None:
    """Run a deliverer on the database of `settings` until `stop` is set."""
    engine = make_engine(settings.database_url)
    try:
        await Deliverer(session_factory(engine), settings, policy=policy).run(stop)
    finally:
        engine.dispose()


@contextlib.asynccontextmanager
async def delivering(
    settings: Settings, *, policy: DeliveryPolicy | None = None
) -> AsyncIterator[None]:
    """Run a deliverer in the background for the duration of the `async with` block.

    On leaving the block the deliverer finishes the sends in hand and stops; what is still
    pending is sent by the next deliverer to run.
    """
    stop = asyncio.Event()
    task = asyncio.create_task(run_deliverer(settings, stop, policy=policy), name="duly-deliverer")
    task.add_done_callback(_report_failure)
    try:
        yield
    finally:
        stop.set()
        try:
            with contextlib.suppress(Exception):  # reported by _report_failure
                await task
        finally:
            task.cancel()


def _report_failure(task: asyncio.Task[None]) -> None:
    # The worker goes on without notifications: say so when it happens, not at shutdown
    if not task.cancelled() and task.exception() is not None:
        _log.error("deliverer_failed", exc_info=task.exception())
