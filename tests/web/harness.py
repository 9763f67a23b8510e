"""duly's whole web stack for a browser: Temporal, a worker, the app under uvicorn, Chromium.

Used by the browser tests (tests/web/) and by scripts/screenshots.py, so the screenshots show
exactly what the tests drive. Chromium is Debian's (`apt-get install chromium`), launched by
path: nothing is downloaded (`playwright install` is never run).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from aiosmtpd.controller import Controller
from api.conftest import SECRET, Api, end_everything, make_store
from playwright.async_api import Browser, Page, Playwright
from support import free_port
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.process import ProcessActivities
from duly.api.app import create_app
from duly.api.server import EmbeddedServer, bind
from duly.language.loader import Definitions
from duly.settings import Settings
from workflows.contracts import ProcessContract, implementations
from workflows.process import ProcessWorkflow
from workflows.sandbox import workflow_runner

CHROMIUM = os.environ.get("DULY_TEST_CHROMIUM", "/usr/bin/chromium")
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 860}
PHONE = {"width": 390, "height": 844}


def chromium_missing() -> str | None:
    """Why the browser tests cannot run here, or None when Chromium is installed."""
    if Path(CHROMIUM).exists() or shutil.which(CHROMIUM):
        return None
    return (
        f"Chromium is not installed at {CHROMIUM}: `apt-get install -y chromium` "
        "(.ci/run does it on a fresh machine)"
    )


async def launch(playwright: Playwright) -> Browser:
    """Debian's Chromium, headless, with nothing that calls home."""
    return await playwright.chromium.launch(
        executable_path=CHROMIUM, args=LAUNCH_ARGS, headless=True
    )


@dataclass
class Site:
    """The app served over HTTP, with the test API helpers (tokens, database, Temporal)."""

    url: str
    api: Api

    def token(self, user: str) -> str:
        return self.api.tokens[user]


class _Mailbox:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 accepted"


@asynccontextmanager
async def running_site(
    env: WorkflowEnvironment, definitions: Definitions, data_dir: Path, task_queue: str
) -> AsyncIterator[Site]:
    """A fresh SQLite store, a worker with real activities, and the app on 127.0.0.1:<free>.

    Every instance still running at the end is ended through its process's first `on:`
    event, never terminated (see `api.conftest.end_everything`).
    """
    smtp_port = free_port()
    smtp = Controller(_Mailbox(), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    settings = Settings(
        data_dir=data_dir,
        events_secret=SECRET,
        task_queue=task_queue,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_from="duly@acme.test",
    )
    db, sessions, tokens = make_store(data_dir, definitions)
    app = create_app(settings, definitions, engine=db, client=env.client)
    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = EmbeddedServer(
        uvicorn.Config(app, log_config=None, log_level="warning", access_log=False)
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]), name="duly-web-test")
    try:
        with ThreadPoolExecutor(max_workers=8) as executor:
            async with Worker(
                env.client,
                task_queue=task_queue,
                workflows=[ProcessWorkflow],
                activities=implementations(
                    [ProcessContract], [ProcessActivities(sessions, settings)]
                ),
                activity_executor=executor,
                workflow_runner=workflow_runner(),
            ):
                while not server.started:
                    if serving.done():
                        serving.result()  # raises what stopped it
                    await asyncio.sleep(0.02)
                url = f"http://127.0.0.1:{port}"
                async with httpx.AsyncClient(base_url=url, timeout=30) as http:
                    yield Site(url, Api(http, sessions, definitions, env, tokens))
                await end_everything(env.client, sessions, definitions)
    finally:
        server.should_exit = True
        await serving
        sock.close()
        db.dispose()
        smtp.stop()


async def sign_in(page: Page, site: Site, user: str, then: str = "/inbox") -> None:
    """Sign in through the login form as `user`, and land on `then`."""
    await page.goto(f"{site.url}{then}")
    await page.wait_for_url(re.compile(r"/login\?next="))
    await page.get_by_label("User id").fill(user)
    await page.get_by_label("API token").fill(site.token(user))
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(f"{site.url}{then}")
