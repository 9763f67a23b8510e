"""duly's Prometheus metrics, and the Temporal SDK's, on one `/metrics` per process.

Each process counts what happens in it: the worker (activities, the notification deliverer,
the monitors) and the web app (requests) are separate processes, each with its own `/metrics`:
the worker's on `DULY_METRICS_HOST:DULY_METRICS_PORT` (`serving`), the web app's at `/metrics`
on its own port. Prometheus scrapes every worker replica and every web replica.

duly's counters live in prometheus_client's default registry (beside its process_* and
python_* collectors). The Temporal SDK's runtime metrics (workflow and activity task latencies,
poller counts, client request counts...) come from a `Runtime` with a Prometheus exporter bound
to a private loopback port; each scrape appends that exporter's text to duly's, so one endpoint
serves both. Names never clash: duly's start `duly_`, the SDK's `temporal_`.

Counters are incremented after the change they count has committed, and only when it was new
(a retried activity that finds its row counts nothing).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import socket
import threading
import urllib.request
from collections.abc import AsyncIterator
from functools import cache
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, generate_latest
from sqlalchemy import event
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from duly.settings import Settings

_log = structlog.get_logger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The content type of `exposition()`: Prometheus' text format."""

SDK_SCRAPE_TIMEOUT = 2.0  # seconds; the SDK's exporter is in this process, on loopback

# --- duly's own counters (Prometheus adds `_total` to each name) --------------------------------

TASKS_OPENED = Counter("duly_tasks_opened", "Tasks opened (assigned).", ["process"])
TASKS_COMPLETED = Counter("duly_tasks_completed", "Tasks completed with an outcome.", ["process"])
TASKS_CANCELLED = Counter(
    "duly_tasks_cancelled", "Tasks cancelled (the instance moved on or ended).", ["process"]
)
SLA_BREACHES = Counter(
    "duly_sla_breaches", "SLA clocks that passed their due time.", ["process", "clock"]
)
ALERTS_RAISED = Counter("duly_alerts_raised", "In-app alerts raised, one per recipient.", ["level"])
NOTIFICATIONS_DELIVERED = Counter(
    "duly_notifications_delivered",
    "Notifications (alerts, assignments) delivered on an external channel.",
    ["channel", "kind"],
)
NOTIFICATIONS_FAILED = Counter(
    "duly_notifications_failed",
    "Notifications given up on after their last attempt (kept as failed deliveries).",
    ["channel", "kind"],
)
NOTIFICATION_RETRIES = Counter(
    "duly_notification_retries",
    "Failed delivery attempts that will be tried again.",
    ["channel", "kind"],
)
MONITOR_CHECKS = Counter(
    "duly_monitor_checks",
    "Periodic monitor checks recorded, by the monitor's state after the check.",
    ["monitor", "state"],
)
"""Incremented by the monitors (duly.monitors): `MONITOR_CHECKS.labels(monitor, state).inc()`."""
SOURCE_EVENTS = Counter(
    "duly_source_events",
    "CRM changes a source took: received (delivered or a duplicate), ignored (no rule maps "
    "them), refused (their request was refused: bad signature, malformed, unmappable).",
    ["source", "outcome"],
)
HTTP_REQUESTS = Counter(
    "duly_http_requests", "Requests the web app answered, by status class.", ["method", "status"]
)


# --- counting what a transaction commits -------------------------------------------------------

_PENDING = "duly_metrics_pending"


def count_on_commit(session: Session, counter: Any, amount: float = 1) -> None:
    """Increment `counter` once the session's transaction commits.

    A rolled-back transaction (a retry follows) counts nothing, so retries never count twice.

    Args:
        session: The session whose transaction makes the change counted.
        counter: A labelled counter, e.g. `TASKS_OPENED.labels(process="quote-follow-up")`.
        amount: How much to add.
    """
    session.info.setdefault(_PENDING, []).append((counter, amount))


@event.listens_for(Session, "after_commit")
def _count_committed(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: the outer transaction may still roll back
    for counter, amount in session.info.pop(_PENDING, []):
        counter.inc(amount)


@event.listens_for(Session, "after_rollback")
def _forget_rolled_back(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint rolled back: the outer transaction goes on
    session.info.pop(_PENDING, None)


# --- the Temporal SDK's metrics -------------------------------------------------------------------


def _free_loopback_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_sdk_endpoint: list[str] = []  # the SDK exporter's URL, once `temporal_runtime` made it


@cache
def temporal_runtime() -> Runtime:
    """The process's Temporal runtime, exporting the SDK's metrics on a private loopback port.

    Clients connected with it (`duly.temporal_client.connect(metrics=True)`), and the workers
    built on them, record into it; `exposition()` reads it back.
    """
    port = _free_loopback_port()
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(
                bind_address=f"127.0.0.1:{port}",
                counters_total_suffix=True,
                durations_as_seconds=True,
            )
        )
    )
    _sdk_endpoint.append(f"http://127.0.0.1:{port}/metrics")
    return runtime


def _sdk_metrics() -> bytes:
    if not _sdk_endpoint:
        return b""
    try:
        with urllib.request.urlopen(_sdk_endpoint[0], timeout=SDK_SCRAPE_TIMEOUT) as answer:
            body: bytes = answer.read()
            return body
    except OSError as exc:
        return f"# the Temporal SDK's metrics are unavailable: {exc}\n".encode()


def exposition() -> bytes:
    """This process's metrics in Prometheus' text format: duly's, then the Temporal SDK's."""
    return generate_latest(REGISTRY) + _sdk_metrics()


# --- serving ----------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        if self.path.split("?")[0] not in ("/metrics", "/"):
            self.send_error(404, "metrics are at /metrics")
            return
        body = exposition()
        self.send_response(200)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Scrapes are not worth a log line each."""


class MetricsServer:
    """`/metrics` over HTTP on a thread of its own, so a busy event loop never delays a scrape.

    Args:
        host: The interface to listen on.
        port: The port; 0 picks a free one (see `port`).
    """

    def __init__(self, host: str, port: int) -> None:
        self._server = http.server.ThreadingHTTPServer((host, port), _Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="duly-metrics", daemon=True
        )

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Start answering."""
        self._thread.start()

    def stop(self) -> None:
        """Stop answering and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[MetricsServer | None]:
    """The worker's `/metrics` while inside, when `DULY_METRICS_PORT` is set (else None).

    Raises:
        OSError: The port is taken; the message says which setting to change.
    """
    if settings.metrics_port is None:
        yield None
        return
    try:
        server = MetricsServer(settings.metrics_host, settings.metrics_port)
    except OSError as exc:
        raise OSError(
            f"cannot serve /metrics on {settings.metrics_host}:{settings.metrics_port} "
            f"({exc.strerror}); choose another DULY_METRICS_PORT"
        ) from None
    server.start()
    _log.info("metrics_serving", url=f"http://{settings.metrics_host}:{server.port}/metrics")
    try:
        yield server
    finally:
        server.stop()


class RequestCounter:
    """ASGI middleware: count the web app's answers by method and status class (`2xx`...)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; count its response's status."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = f"{int(message['status']) // 100}xx"
                HTTP_REQUESTS.labels(method=scope["method"], status=status).inc()
            await send(message)

        await self.app(scope, receive, counted)


async def endpoint(_: Request) -> Response:
    """`GET /metrics` for a Starlette/FastAPI app (the web app's)."""
    body = await asyncio.to_thread(exposition)  # reads the SDK's exporter over loopback
    return Response(body, media_type=CONTENT_TYPE)
