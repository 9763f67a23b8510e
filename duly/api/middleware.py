"""ASGI middleware: a limit on request bodies, and headers that keep browsers from guessing."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

MAX_BODY_BYTES = 256 * 1024
"""The largest request body the API takes (an event's or a task's data is far smaller)."""


class BodyLimit:
    """ASGI middleware: buffer each request body up to `limit` bytes, refuse a larger one.

    A declared `Content-Length` over the limit is refused without reading; a body streamed
    without one is read until it passes the limit. The app then reads the buffered body as
    usual, so a signature over the raw bytes (inbound events) sees exactly what was sent.

    Args:
        app: The application.
        limit: The largest body accepted, in bytes.
    """

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with its body buffered, or answer 413."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and not declared.isdigit():
            text = declared.decode("latin-1")
            await self._refuse(send, 400, f"Content-Length {text!r} is not a size in bytes")
            return
        if declared is not None and int(declared) > self.limit:
            await self._refuse(send, *self._too_large(declared.decode()))
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send, *self._too_large(f"more than {self.limit}"))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self, size: str) -> tuple[int, str]:
        return 413, (
            f"the request body is {size} bytes; the limit is {self.limit} bytes "
            f"({self.limit // 1024} KiB): send less data per request"
        )

    async def _refuse(self, send: Send, status: int, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class SecurityHeaders:
    """ASGI middleware: every response says its content type is final (`nosniff`).

    The API answers JSON only; with `nosniff` no browser renders a JSON answer that carries
    user data (a lead named `<script>...`) as HTML. Pages set their own headers on top.
    """

    HEADERS = ((b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"))

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Add the headers to the response's start."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.HEADERS if n not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)
