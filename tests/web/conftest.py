"""Browser tests: Debian's Chromium through Playwright against the app served by uvicorn.

Without Chromium the browser tests are skipped, saying how to install it; under CI=true
(where .ci/run installs it) that fails the run instead.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from api.conftest import api, offline_api  # noqa: F401  (the API fixtures, for page tests)
from playwright.async_api import Browser, BrowserContext, async_playwright
from temporalio.testing import WorkflowEnvironment

from duly.language.loader import Definitions

from .harness import DESKTOP, Site, chromium_missing, launch, running_site


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium, shared by the browser tests (each gets its own context)."""
    missing = chromium_missing()
    if missing is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{missing} (CI=true: the browser tests must run)")
        pytest.skip(missing)
    async with async_playwright() as playwright:
        chromium = await launch(playwright)
        yield chromium
        await chromium.close()


@pytest_asyncio.fixture(loop_scope="session")
async def site(
    time_skipping_env: WorkflowEnvironment,
    definitions: Definitions,
    task_queue: str,
    tmp_path: Path,
) -> AsyncIterator[Site]:
    """duly served on 127.0.0.1:<free port>, on the time-skipping server, with a worker."""
    async with running_site(time_skipping_env, definitions, tmp_path, task_queue) as running:
        yield running


@pytest_asyncio.fixture(loop_scope="session")
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    """A fresh browser profile (no cookies) whose pages fail the test on a script dialog."""
    ctx = await browser.new_context(viewport=DESKTOP)
    ctx.set_default_timeout(10_000)
    yield ctx
    await ctx.close()
