"""The dashboard in real Chromium, on history written by `duly demo` (the real engine).

One short demo fills a database; the app serves it under uvicorn on 127.0.0.1; Debian's
Chromium signs in as a manager, a rep and checks what each sees: the weekly chart against the
goal, the reps' consistency, the funnel and outcomes, breaches that link to their instances,
and CSV downloads. The page's Content Security Policy allows no inline style or script, so any
chart that needed one would show up as a console error here.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, expect

from duly.api.app import create_app
from duly.api.server import EmbeddedServer, bind
from duly.demo import run_demo
from duly.language.loader import Definitions
from duly.services.auth import issue_token
from duly.settings import Settings
from duly.store.db import make_engine, session_factory, write_session

from .harness import PHONE

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class DemoSite:
    url: str
    tokens: dict[str, str]
    engine: object


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def demo_site(
    tmp_path_factory: pytest.TempPathFactory, definitions: Definitions
) -> AsyncIterator[DemoSite]:
    """Two weeks of demo history, served by the app (no Temporal: the dashboard reads the DB)."""
    data = tmp_path_factory.mktemp("demo")
    settings = Settings(data_dir=data, definitions=ROOT / "definitions")
    await run_demo(settings, definitions, weeks=2, seed=5, scale=0.5)
    engine = make_engine(settings.database_url)
    with write_session(session_factory(engine)) as session:
        tokens = {user: issue_token(session=session, user_id=user) for user in ("maria", "ben")}
    app = create_app(settings, definitions, engine=engine)
    sock = bind("127.0.0.1", 0)
    server = EmbeddedServer(
        uvicorn.Config(app, log_config=None, log_level="warning", access_log=False)
    )
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.02)
    try:
        yield DemoSite(f"http://127.0.0.1:{sock.getsockname()[1]}", tokens, engine)
    finally:
        server.should_exit = True
        await serving
        sock.close()
        engine.dispose()  # type: ignore[attr-defined]


async def signed_in(context: BrowserContext, site: DemoSite, user: str, path: str) -> Page:
    page = await context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.problems = problems  # type: ignore[attr-defined]
    await page.goto(f"{site.url}{path}")
    await page.wait_for_url(re.compile(r"/login\?next="))
    await page.get_by_label("User id").fill(user)
    await page.get_by_label("API token").fill(site.tokens[user])
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_url(re.compile(r"/dashboard"))
    return page


async def test_a_manager_sees_her_teams_consistency_and_follows_a_breach_to_its_instance(
    demo_site: DemoSite, context: BrowserContext
) -> None:
    page = await signed_in(
        context, demo_site, "maria", "/dashboard?process=quote-follow-up&weeks=4"
    )
    await expect(page.get_by_role("heading", level=1)).to_have_text(
        "Follow up on every sent quote within two business days"
    )
    await expect(page.get_by_role("link", name="Dashboard")).to_have_attribute(
        "aria-current", "page"
    )
    # the weekly chart: four weeks, the goal's line, a bar for each week with work in it
    chart = page.locator("#chart-weeks svg")
    await expect(chart).to_have_attribute("role", "img")
    await expect(chart.locator("title").first).to_contain_text("SLA attainment by week")
    await expect(chart.locator("desc")).to_contain_text("goal 95%")
    assert await chart.locator("rect title").count() >= 2  # weeks with a measured bar
    # her team's reps, each with a dot per week; the team's spread beneath
    rows = page.locator("#reps tbody tr")
    reps = await rows.evaluate_all("rows => rows.map(r => r.dataset.rep)")
    assert {"ana", "ben", "chloe"} <= set(reps), reps
    await expect(rows.first.locator(".dots circle")).to_have_count(4)
    await expect(page.locator(".spread").first).to_contain_text("inbound-sales: reps from")
    # the team filter offers her teams only
    team_options = await page.get_by_label("Team").locator("option").all_text_contents()
    assert team_options == ["all my teams", "inbound-sales"]
    await expect(page.locator("#chart-funnel svg")).to_contain_text("call-customer")
    await expect(page.locator("#chart-outcomes svg.chart")).to_contain_text("reached")
    # the outcomes' key: each outcome's colour and whole name, in a table
    key = page.locator("#chart-outcomes table.outcome-key")
    await expect(key.locator('tr[data-outcome="reached"]')).to_contain_text("reached")
    reached = await page.locator(
        '#chart-outcomes rect[data-outcome="reached"]'
    ).first.get_attribute("fill")
    swatch = key.locator('tr[data-outcome="reached"] svg rect')
    await expect(swatch).to_have_attribute("fill", reached or "?")

    # a breach links to its instance
    breach = page.locator("#breaches tbody a").first
    href = await breach.get_attribute("href")
    assert href is not None and href.startswith("/instances/quote-follow-up/Q-")
    await breach.click()
    await page.wait_for_url(re.compile(r"/instances/quote-follow-up/Q-"))
    await expect(page.get_by_role("heading", level=1)).to_be_visible()
    assert page.problems == []  # type: ignore[attr-defined]


async def test_the_csv_links_download_the_reports_with_the_same_filters(
    demo_site: DemoSite, context: BrowserContext
) -> None:
    page = await signed_in(context, demo_site, "maria", "/dashboard?process=lead-follow-up")
    link = page.get_by_role("link", name="Attainment by rep")
    href = await link.get_attribute("href")
    assert href == "/dashboard/attainment.csv?process=lead-follow-up&weeks=8&by=rep"
    answer = await page.request.get(f"{demo_site.url}{href}")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/csv")
    lines = (await answer.text()).splitlines()
    assert lines[0].startswith("rep,met,breached,open_overdue,measured,attainment,goal")
    assert {line.split(",")[0] for line in lines[1:]} >= {"ana", "ben", "chloe", "all"}
    consistency = await page.request.get(
        f"{demo_site.url}/dashboard/consistency.csv?process=lead-follow-up"
    )
    assert consistency.status == 200 and (await consistency.text()).startswith("rep,team")


async def test_a_rep_sees_only_their_own_row(demo_site: DemoSite, context: BrowserContext) -> None:
    page = await signed_in(context, demo_site, "ben", "/dashboard?process=quote-follow-up")
    reps = await page.locator("#reps tbody tr").evaluate_all("rows => rows.map(r => r.dataset.rep)")
    assert reps == ["ben"]
    await expect(page.get_by_label("Team")).to_have_count(0)
    await expect(page.locator(".eyebrow")).to_contain_text("your own work")
    assert page.problems == []  # type: ignore[attr-defined]


async def test_a_manager_asking_for_another_team_is_told_why_not(
    demo_site: DemoSite, context: BrowserContext
) -> None:
    page = await signed_in(context, demo_site, "maria", "/dashboard?team=support")
    await expect(page.locator("main")).to_contain_text("team support is not one you manage")
    answer = await page.request.get(f"{demo_site.url}/dashboard?team=support")
    assert answer.status == 403


async def test_on_a_phone_wide_tables_scroll_inside_their_card(
    demo_site: DemoSite, browser: Browser
) -> None:
    context = await browser.new_context(viewport=PHONE)
    try:
        page = await signed_in(context, demo_site, "maria", "/dashboard?process=quote-follow-up")
        await expect(page.locator("#reps tbody tr").first).to_be_visible()
        # the page itself never scrolls sideways: nothing sticks out on the right
        page_width = await page.evaluate("document.documentElement.scrollWidth")
        assert page_width <= PHONE["width"], page_width
        for table_id, heading in (("reps", "#reps-title"), ("breaches", "#breaches-title")):
            table = page.locator(f"#{table_id}")
            card = page.locator(f"section.card:has(#{table_id})")
            card_box = await card.bounding_box()
            assert card_box is not None
            right = card_box["x"] + card_box["width"]
            assert 0 <= card_box["x"] and right <= PHONE["width"]
            # the table scrolls, wider than the card, its columns kept whole (no word a line);
            # the card itself does not: its heading stays put
            scroll = await table.evaluate(
                "t => [t.scrollWidth, t.clientWidth, getComputedStyle(t).overflowX]"
            )
            assert scroll[0] > scroll[1] and scroll[2] == "auto", (table_id, scroll)
            assert await card.evaluate("c => c.scrollWidth <= c.clientWidth")
            first_cell = table.locator("tbody tr").first.locator("td").nth(1)
            cell_box = await first_cell.bounding_box()
            assert cell_box is not None and cell_box["height"] < 48, cell_box  # one line
            before = await page.locator(heading).bounding_box()
            await table.evaluate("t => { t.scrollLeft = t.scrollWidth }")
            last = table.locator("thead th").last
            box = await last.bounding_box()
            assert box is not None and box["x"] + box["width"] <= right + 1, box
            assert await page.locator(heading).bounding_box() == before
        assert page.problems == []  # type: ignore[attr-defined]
    finally:
        await context.close()
