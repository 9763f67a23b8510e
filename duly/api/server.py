"""Serve the API with uvicorn inside another program (`duly up`) until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from fastapi import FastAPI


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals to its host program.

    uvicorn installs its own SIGINT/SIGTERM handlers while serving; inside `duly up` those
    would take Ctrl-C from the stack, which stops the web app (with everything else) itself.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Install nothing: the host program handles signals."""
        yield


async def serve(app: FastAPI, host: str, port: int, stop: asyncio.Event) -> None:
    """Serve `app` on host:port until `stop` is set (or the server fails).

    Raises:
        OSError: The address could not be bound.
    """
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, log_level="warning", access_log=False
    )
    server = EmbeddedServer(config)
    sock = bind(host, port)  # here, so a taken port raises instead of uvicorn's sys.exit
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="duly-web")
    stopping = asyncio.create_task(stop.wait(), name="duly-web-stop")
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        await serving
        sock.close()


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port.

    Raises:
        OSError: The address is taken (or not this machine's).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock
