"""Take docs/screenshots/dashboard.png: the dashboard on six weeks of `duly demo` history.

    .venv/bin/python scripts/dashboard_screenshot.py [OUTPUT_PNG]

Runs `duly demo` (seed 1, six weeks) into a temporary data folder, serves the app on
127.0.0.1:<free port> under uvicorn and photographs /dashboard as Maria (a manager) in Debian's
Chromium, launched by path with nothing that calls home (as the browser tests do).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the browser launch lives with the tests

import structlog  # noqa: E402
import uvicorn  # noqa: E402
from playwright.async_api import async_playwright  # noqa: E402
from web.harness import chromium_missing, launch  # noqa: E402

from duly.api.app import create_app  # noqa: E402
from duly.api.server import EmbeddedServer, bind  # noqa: E402
from duly.demo import run_demo  # noqa: E402
from duly.language.loader import load_definitions  # noqa: E402
from duly.services.auth import issue_token  # noqa: E402
from duly.settings import Settings  # noqa: E402
from duly.store.db import make_engine, session_factory, write_session  # noqa: E402

OUT = ROOT / "docs" / "screenshots" / "dashboard.png"
USER = "maria"


async def main(out: Path) -> None:
    """Write the demo history, serve it, and photograph the dashboard into `out`."""
    missing = chromium_missing()
    if missing is not None:
        raise SystemExit(missing)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    definitions = load_definitions(ROOT / "definitions")
    with tempfile.TemporaryDirectory() as data:
        settings = Settings(data_dir=Path(data), definitions=ROOT / "definitions")
        print((await run_demo(settings, definitions, weeks=6, seed=1)).summary())
        engine = make_engine(settings.database_url)
        with write_session(session_factory(engine)) as session:
            token = issue_token(session=session, user_id=USER)
        app = create_app(settings, definitions, engine=engine)
        sock = bind("127.0.0.1", 0)
        server = EmbeddedServer(
            uvicorn.Config(app, log_config=None, log_level="warning", access_log=False)
        )
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            await asyncio.sleep(0.02)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        try:
            async with async_playwright() as playwright:
                browser = await launch(playwright)
                context = await browser.new_context(
                    viewport={"width": 1280, "height": 860},
                    timezone_id="America/New_York",
                    device_scale_factor=1.5,
                )
                page = await context.new_page()
                await page.goto(f"{url}/dashboard")
                await page.get_by_label("User id").fill(USER)
                await page.get_by_label("API token").fill(token)
                await page.get_by_role("button", name="Sign in").click()
                await page.wait_for_url(re.compile(r"/dashboard"))
                out.parent.mkdir(parents=True, exist_ok=True)
                await page.screenshot(path=out, full_page=True)
                await browser.close()
        finally:
            server.should_exit = True
            await serving
            sock.close()
            engine.dispose()
    print(out.relative_to(ROOT) if out.is_relative_to(ROOT) else out)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
    sys.stdout.flush()
    # Everything is written; skip the interpreter's teardown, where the Temporal SDK's native
    # threads can abort it after the work is done (as scripts/screenshots.py does).
    os._exit(0)
