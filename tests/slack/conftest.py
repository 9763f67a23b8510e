"""The Slack app against a local Slack Web API, on the API's real Temporal and store.

`SlackServer` answers the Web API methods duly calls (chat.postMessage, chat.update,
views.open) and the response_urls Slack hands out, on 127.0.0.1; tests queue failures (a 429
with Retry-After, an error) in front of any method. Requests to duly are signed with the
signing secret exactly as Slack documents (`v0:{timestamp}:{body}`, HMAC-SHA256, hex), using
slack_sdk's own `SignatureVerifier.generate_signature`.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode

import httpx
import pytest
import pytest_asyncio
from aiohttp import web
from api.conftest import SECRET, Api, end_everything, make_store
from slack_sdk.signature import SignatureVerifier
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.process import ProcessActivities
from duly.api.app import create_app
from duly.api.routes.slack import background_done
from duly.language.loader import Definitions
from duly.language.model import SlackApp
from duly.notify.deliverer import Deliverer, DeliveryPolicy
from duly.settings import Settings
from duly.store.models import Delivery
from workflows.contracts import ProcessContract, implementations
from workflows.process import ProcessWorkflow
from workflows.sandbox import workflow_runner

BOT_TOKEN = "xoxb-test-" + "1" * 20
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_IDS = {"ana": "U0ANA", "ben": "U0BEN", "maria": "U0MARIA", "omar": "U0OMAR"}
POLICY = DeliveryPolicy(poll_interval=0.02, lease=10.0, send_timeout=5.0, first_retry=0.01)


@dataclass
class Call:
    """One request the local Slack received."""

    method: str
    body: dict[str, Any]
    token: str


@dataclass
class SlackServer:
    """A local Slack Web API: records every call, answers in Slack's documented shapes."""

    url: str = ""
    calls: list[Call] = field(default_factory=list)
    failures: dict[str, list[web.Response]] = field(default_factory=dict)
    next_ts: int = 1000
    held: dict[str, asyncio.Event] = field(default_factory=dict)

    def hold(self, method: str) -> asyncio.Event:
        """Keep calls of `method` waiting until the returned event is set."""
        self.held[method] = asyncio.Event()
        return self.held[method]

    def fail(self, method: str, *responses: web.Response) -> None:
        """Answer the next calls of `method` with these, in order."""
        self.failures.setdefault(method, []).extend(responses)

    def of(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method == method]

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        raw = await request.text()
        if request.content_type == "application/json":
            body = json.loads(raw or "{}")
        else:
            body = {key: values[-1] for key, values in parse_qs(raw).items()}
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        self.calls.append(Call(method, body, token))
        if method in self.held:
            await self.held.pop(method).wait()
        queued = self.failures.get(method)
        if queued:
            return queued.pop(0)
        if method.startswith("respond/"):
            return web.Response(text="ok")
        if token != BOT_TOKEN:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if method == "chat.postMessage":
            self.next_ts += 1
            channel = "D" + str(body["channel"])[1:]
            return web.json_response(
                {"ok": True, "channel": channel, "ts": f"{self.next_ts}.000100", "message": {}}
            )
        if method == "chat.update":
            return web.json_response({"ok": True, "channel": body["channel"], "ts": body["ts"]})
        if method == "views.open":
            return web.json_response({"ok": True, "view": {"id": "V0TEST"}})
        return web.json_response({"ok": False, "error": "unknown_method"})


def signed(body: bytes, *, secret: str = SIGNING_SECRET, at: float | None = None) -> dict[str, str]:
    """Slack's headers for `body`: signed with slack_sdk's own signer."""
    timestamp = str(int(at if at is not None else time.time()))
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    assert signature is not None
    return {
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
        "Content-Type": "application/x-www-form-urlencoded",
    }


@dataclass
class SlackWorld:
    """The API (`api`), its deliverer, and the local Slack."""

    api: Api
    slack: SlackServer
    deliverer: Deliverer

    @property
    def http(self) -> httpx.AsyncClient:
        return self.api.http

    async def deliver(self) -> None:
        """Send the due Slack deliveries, retrying failed ones until each is sent or failed."""
        for _ in range(500):
            await self.deliverer.deliver_due()
            pending = self.api.rows(
                Delivery, Delivery.status == "pending", Delivery.channel == "slack"
            )
            if not pending:
                return
            await asyncio.sleep(0.02)  # a poll: the retry is due within milliseconds
        raise AssertionError("Slack deliveries still pending")

    async def rounds_until(self, check: Callable[[], Any], what: str) -> None:
        """Run deliverer rounds (which also update stale messages) until `check()` holds."""
        for _ in range(500):
            await self.deliverer.deliver_due()
            if check():
                return
            await asyncio.sleep(0.02)  # a poll: the worker records the task in milliseconds
        raise AssertionError(f"{what} never held")

    async def interact(self, payload: dict[str, Any], **headers: str) -> httpx.Response:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        response = await self.http.post(
            "/api/slack/interactions", content=body, headers={**signed(body), **headers}
        )
        await background_done()
        return response

    async def command(self, user: str, text: str) -> str:
        """Run `/duly <text>` as `user`; the text duly posted to the response_url."""
        hook = f"respond/{uuid.uuid4().hex}"
        form = {
            "command": "/duly",
            "text": text,
            "user_id": SLACK_IDS.get(user, user),
            "response_url": f"{self.slack.url}{hook}",
            "trigger_id": "13345224609.738474920.8088930838d88f008e0",
        }
        body = urlencode(form).encode()
        response = await self.http.post("/api/slack/commands", content=body, headers=signed(body))
        assert response.status_code == 200, response.text
        await background_done()
        (call,) = self.slack.of(hook)
        return str(call.body["text"])

    def response_url(self) -> tuple[str, str]:
        hook = f"respond/{uuid.uuid4().hex}"
        return hook, f"{self.slack.url}{hook}"


@pytest.fixture(scope="session")
def slack_definitions(definitions: Definitions) -> Definitions:
    """The shipped definitions with the Slack app and Slack ids for a few users."""
    users = {
        user_id: spec.model_copy(update={"slack_id": SLACK_IDS.get(user_id)})
        for user_id, spec in definitions.org.users.items()
    }
    app = SlackApp(bot_token="DULY_TEST_SLACK_BOT", signing_secret="DULY_TEST_SLACK_SIGNING")
    org = definitions.org.model_copy(update={"users": users, "slack": app})
    return replace(definitions, org=org)


@pytest.fixture
def slack_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DULY_TEST_SLACK_BOT", BOT_TOKEN)
    monkeypatch.setenv("DULY_TEST_SLACK_SIGNING", SIGNING_SECRET)
    yield


@pytest_asyncio.fixture(loop_scope="session")
async def slack_server() -> AsyncIterator[SlackServer]:
    server = SlackServer()
    app = web.Application()
    app.router.add_post("/api/{method:.+}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}/api/"
    yield server
    await runner.cleanup()


@pytest_asyncio.fixture(loop_scope="session")
async def world(
    time_skipping_env: WorkflowEnvironment,
    slack_definitions: Definitions,
    task_queue: str,
    tmp_path: Path,
    slack_server: SlackServer,
    slack_env: None,
    smtp: tuple[Settings, Any],
) -> AsyncIterator[SlackWorld]:
    """The API with a worker running real activities, a deliverer, and the local Slack.

    Emails go to the test's own SMTP server: never to a `duly up` on this machine.
    """
    mail, _ = smtp
    settings = Settings(
        smtp_host=mail.smtp_host,
        smtp_port=mail.smtp_port,
        smtp_from=mail.smtp_from,
        events_secret=SECRET,
        task_queue=task_queue,
        data_dir=tmp_path,
        slack_api_url=slack_server.url,
        public_url="http://duly.test",
    )
    db, sessions, tokens = make_store(tmp_path, slack_definitions)
    app = create_app(settings, slack_definitions, engine=db, client=time_skipping_env.client)
    deliverer = Deliverer(sessions, settings, policy=POLICY)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with Worker(
            time_skipping_env.client,
            task_queue=task_queue,
            workflows=[ProcessWorkflow],
            activities=implementations([ProcessContract], [ProcessActivities(sessions, settings)]),
            activity_executor=executor,
            workflow_runner=workflow_runner(),
        ):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://duly.test") as http:
                api = Api(http, sessions, slack_definitions, time_skipping_env, tokens)
                yield SlackWorld(api, slack_server, deliverer)
                await background_done()
            await end_everything(time_skipping_env.client, sessions, slack_definitions)
    await deliverer.aclose()
    db.dispose()
