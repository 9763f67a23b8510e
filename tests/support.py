"""Helpers for tests that run duly against real servers: ports for them, waiting on a condition,
a definitions folder holding drill processes beside the shipped calendars, org and templates, and
a fresh store holding an org, an HTTP receiver."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import os
import shutil
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from duly.language.model import OrgSpec
from duly.stack import port_is_free
from duly.store.crud import sync_org
from duly.store.db import SessionFactory, create_all, make_engine, session_factory
from workflows.messages import InstanceState

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")

# The ports tests give the servers they start come from below Linux's ephemeral range
# (32768-60999), which the kernel draws from for every port-0 bind and every outgoing
# connection: a port taken from there was free when chosen, but any test's connection or server
# could get it in the seconds before the server it was chosen for binds it (a `duly up` under
# load, once). Each pytest-xdist worker draws from a block of its own, in turn.
PORTS_FROM, PORTS_PER_WORKER = 20_000, 2_000
_worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_ports = itertools.cycle(
    range(PORTS_FROM + _worker * PORTS_PER_WORKER, PORTS_FROM + (_worker + 1) * PORTS_PER_WORKER)
)


def free_port() -> int:
    """A loopback TCP port for a server a test starts: free now, and handed out to no one else."""
    for _ in range(PORTS_PER_WORKER):
        port = next(_ports)
        if port_is_free(port):
            return port
    raise RuntimeError(f"no free port in this test worker's block of {PORTS_PER_WORKER}")


async def poll(
    check: Callable[[], T | None] | Callable[[], Awaitable[T | None]],
    *,
    timeout: float,
    what: str | Callable[[], str],
    interval: float = 0.1,
) -> T:
    """Call `check` until it returns something truthy (and return it), failing after `timeout`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if loop.time() > deadline:
            what = what if isinstance(what, str) else what()
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


async def state_of(handle: WorkflowHandle[Any, Any], *, patience: float = 120) -> InstanceState:
    """An instance's `state` query, asked again while it times out (for `patience` seconds).

    A query is answered by the worker, which replays a closed or evicted instance first: on a
    loaded machine, with many asked at once, one can outlast its timeout and still be fine.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience
    while True:
        try:
            return await handle.query(
                "state", result_type=InstanceState, rpc_timeout=timedelta(seconds=10)
            )
        except RPCError as error:
            # the SDK's client gives up as CANCELLED "Timeout expired", the server as
            # DEADLINE_EXCEEDED
            timed_out = error.status in (RPCStatusCode.CANCELLED, RPCStatusCode.DEADLINE_EXCEEDED)
            if not timed_out or loop.time() > deadline:
                raise


def definitions_with(folder: Path, processes: dict[str, str]) -> Path:
    """Write a definitions folder: the shipped calendars, org and templates, and `processes`
    (file stem -> YAML) as its only processes. Returns `folder`."""
    for part in ("calendars", "templates"):
        shutil.copytree(ROOT / "definitions" / part, folder / part)
    shutil.copy(ROOT / "definitions" / "org.yaml", folder / "org.yaml")
    (folder / "processes").mkdir()
    for name, text in processes.items():
        (folder / "processes" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return folder


def store_with_org(path: Path, org: OrgSpec) -> tuple[Engine, SessionFactory]:
    """A fresh SQLite store at `path` holding `org`'s users and teams (dispose of the engine)."""
    db = make_engine(f"sqlite:///{path}")
    create_all(db)
    sessions = session_factory(db)
    with sessions() as session:
        sync_org(session=session, org=org)
        session.commit()
    return db, sessions


@contextlib.contextmanager
def posted_paths() -> Iterator[tuple[str, list[str]]]:
    """A real HTTP server on 127.0.0.1 that answers 200 and records the paths POSTed to it."""
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            paths.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", paths
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
