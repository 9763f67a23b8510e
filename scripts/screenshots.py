"""Take the screenshots in docs/screenshots/ of duly's web pages, with a morning's work in them.

    .venv/bin/python scripts/screenshots.py [OUTPUT_DIR]

Runs the same stack as the browser tests (tests/web/harness.py): the time-skipping Temporal
server, a worker with the real activities, the app under uvicorn on 127.0.0.1 and Debian's
Chromium. It moves Temporal's clock to a Monday 09:30 in New York, starts a few leads and quotes,
lets two of them breach their one-business-hour SLA, then photographs each page at about 10:32.
The pages and the browser are set to that same clock, so countdowns and business time agree.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # the harness lives with the browser tests

from api.conftest import lead, quote  # noqa: E402
from playwright.async_api import Browser, async_playwright  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from web.harness import (  # noqa: E402
    DESKTOP,
    PHONE,
    Site,
    chromium_missing,
    launch,
    running_site,
    sign_in,
)

from duly import temporal_binaries  # noqa: E402
from duly.api.web import pages  # noqa: E402
from duly.language.loader import load_definitions  # noqa: E402

OUT = ROOT / "docs" / "screenshots"


async def complete(site: Site, task_id: str, user: str, outcome: str, **fields: Any) -> None:
    """Complete a task through the JSON API, as `user`."""
    body = {"outcome": outcome, "fields": fields}
    answer = await site.api.post(f"/api/tasks/{task_id}/complete", user, body)
    answer.raise_for_status()


def named(data: dict[str, Any], name: str, company: str) -> dict[str, Any]:
    """A lead's data with this person's name and company."""
    data["lead"].update(name=name, company=company)
    return data


async def morning(site: Site) -> dict[str, str]:
    """Leads and quotes from 09:30 to 10:32 on a Monday; returns instances worth showing."""
    api = site.api
    await api.sleep_until((await api.next_monday(9)) + timedelta(minutes=30))
    late = await api.start("lead-follow-up", named(lead("chloe"), "Priya Raman", "Northwind"))
    await api.start("lead-follow-up", named(lead("ben"), "Tom Fischer", "Globex"))
    overdue = await api.start("lead-follow-up", named(lead("ana"), "Kim Lee", "Acme"))
    await api.start("quote-follow-up", quote("Q-2041", owner="ben"))
    reached = await api.start("lead-follow-up", named(lead("ana"), "Jo Park", "Initech"))
    await complete(site, (await api.open_task(reached, "first-call")).id, "ana", "reached")
    await api.open_task(reached, "qualify")

    await api.sleep_until((await api.env.get_current_time()) + timedelta(minutes=62))  # type: ignore[union-attr]
    late_call = await api.open_task(late, "first-call")
    await complete(site, late_call.id, "chloe", "no-answer")
    await api.start("lead-follow-up", named(lead("ana"), "Sam Ortiz", "Umbrella"))
    await api.start(
        "quote-follow-up",
        {**quote("Q-2057", owner="ana"), "contact": {"name": "Dana Wu", "email": "dana@x.test"}},
    )
    await api.open_task(overdue, "first-call")
    await asyncio.sleep(1.0)  # let the worker write the last rows
    return {"instance": late}


async def shoot(browser: Browser, site: Site, shown: dict[str, str], out: Path) -> None:
    """Photograph each page, as the user who would look at it, into `out`."""
    now = await site.api.env.get_current_time()  # type: ignore[union-attr]
    # The pages count business time from the Temporal server's clock, as the browser does.
    offset = now - datetime.now(UTC)
    pages.utc_now = lambda: datetime.now(UTC) + offset

    async def page_for(user: str | None, path: str, viewport: dict[str, int] = DESKTOP) -> Any:
        context = await browser.new_context(
            viewport=viewport, timezone_id="America/New_York", device_scale_factor=1.5
        )
        page = await context.new_page()
        await page.clock.install(time=now)
        if user is None:
            await page.goto(f"{site.url}{path}")
        else:
            await sign_in(page, site, user, then=path)
        await page.clock.run_for(1500)  # the countdowns tick once
        return page

    login = await page_for(None, "/login?next=/inbox")
    await login.get_by_label("User id").fill("ana")
    await login.get_by_label("API token").fill("duly_" + "x" * 43)
    await login.screenshot(path=out / "login.png")
    inbox = await page_for("ana", "/inbox")
    await inbox.screenshot(path=out / "inbox.png", full_page=True)
    phone = await page_for("ana", "/inbox", PHONE)
    await phone.screenshot(path=out / "inbox-phone.png")
    alerts = await page_for("maria", "/alerts")
    await alerts.screenshot(path=out / "alerts.png", full_page=True)
    instance = await page_for("maria", f"/instances/{shown['instance']}")
    await instance.screenshot(path=out / "instance.png", full_page=True)
    definitions = await page_for("sam", "/definitions")
    await definitions.screenshot(path=out / "definitions.png", full_page=True)
    definition = await page_for("sam", "/definitions/quote-follow-up")
    await definition.screenshot(path=out / "definition.png", full_page=True)


async def main(out: Path) -> None:
    """Run the stack, play the morning, and save the screenshots into `out`."""
    missing = chromium_missing()
    if missing is not None:
        raise SystemExit(missing)
    out.mkdir(parents=True, exist_ok=True)
    definitions = load_definitions(ROOT / "definitions")
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(temporal_binaries.test_server_path()),
        data_converter=pydantic_data_converter,
    )
    try:
        with tempfile.TemporaryDirectory() as data:
            queue = f"screenshots-{uuid.uuid4()}"
            async with running_site(env, definitions, Path(data), queue) as site:
                shown = await morning(site)
                async with async_playwright() as playwright:
                    browser = await launch(playwright)
                    await shoot(browser, site, shown, out)
                    await browser.close()
    finally:
        await env.shutdown()
    for path in sorted(out.glob("*.png")):
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
    sys.stdout.flush()
    # Everything is shut down and written; skip the interpreter's teardown, where the Temporal
    # SDK's native threads can abort it after the work is done.
    os._exit(0)
