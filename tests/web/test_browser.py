"""In real Chromium: a rep completes tasks from the inbox; a manager sees a breach arrive live.

The whole stack runs: the time-skipping Temporal server, a worker with real activities, the
app under uvicorn on 127.0.0.1, and Debian's Chromium through Playwright. Every lead is named
`<script>alert(1)</script>`: any page that ran it as markup would open a dialog, which fails
the test, and each page must show the name as text.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from api.conftest import lead, quote
from playwright.async_api import Browser, BrowserContext, Dialog, Page, expect
from sqlmodel import select

from duly.store.models import Alert, Instance, Task

from .harness import PHONE, Site, sign_in

pytestmark = pytest.mark.slow

XSS = "<script>alert(1)</script>"


def scripted_lead(owner: str = "ana") -> dict[str, Any]:
    data = lead(owner=owner)
    data["lead"]["name"] = XSS
    return data


async def new_page(context: BrowserContext) -> tuple[Page, list[str]]:
    """A page that records every script dialog (there must be none) and page error."""
    page = await context.new_page()
    problems: list[str] = []

    async def on_dialog(dialog: Dialog) -> None:
        problems.append(f"dialog: {dialog.message}")
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return page, problems


async def test_a_rep_signs_in_sees_their_task_and_completes_it_with_an_outcome(
    site: Site, context: BrowserContext
) -> None:
    api = site.api
    instance = await api.start("lead-follow-up", scripted_lead("ana"))
    first = await api.open_task(instance, "first-call")
    page, problems = await new_page(context)
    # The browser's clock is the Temporal test server's, so the countdown counts to the due
    # time as the rep would see it; it is then moved on by hand to watch it tick.
    await page.clock.install(time=await api.env.get_current_time())  # type: ignore[union-attr]
    await sign_in(page, site, "ana")

    card = page.locator(f'[data-task="{first.id}"]')
    await expect(card.get_by_role("heading")).to_have_text(f"Call new lead {XSS} (Acme)")
    countdown = card.locator("[data-countdown] .countdown-value")
    await expect(card.locator(".countdown-label")).to_have_text("due in")
    before = await countdown.text_content()
    await page.clock.run_for(61_000)
    await expect(countdown).not_to_have_text(before or "")
    await expect(card.locator(".business")).to_contain_text("business time")
    outcomes = card.locator(".outcomes button")
    await expect(outcomes).to_have_text(["reached", "no-answer", "wrong-number"])

    await card.get_by_role("button", name="reached").click()
    await page.wait_for_url(re.compile(r"/inbox\?completed="))
    await expect(page.locator("#completed")).to_contain_text(f"Call new lead {XSS} (Acme)")
    done = await api.until(
        lambda: (row := api.row(Task, first.id)).status != "open" and row, "the close written"
    )
    assert (done.status, done.outcome, done.closed_by) == ("completed", "reached", "ana")

    # The next step's task asks for the fields its step declares; they land in the data.
    qualify = await api.open_task(instance, "qualify")
    await page.reload()
    card = page.locator(f'[data-task="{qualify.id}"]')
    await card.locator('[name="field.budget"]').fill("25000")
    await card.locator('[name="field.timeline"]').select_option("this quarter")  # a picklist
    await card.get_by_label("Note").fill("Budget confirmed on the call")
    await card.get_by_role("button", name="suspect").click()
    await page.wait_for_url(re.compile(r"/inbox\?completed="))
    closed = await api.until(
        lambda: (row := api.row(Task, qualify.id)).status != "open" and row, "the close written"
    )
    assert (closed.outcome, closed.note) == ("suspect", "Budget confirmed on the call")
    row = await api.until(
        lambda: (r := api.row(Instance, instance)) is not None and r.status != "running" and r,
        "the instance ending",
    )
    assert row.data["budget"] == 25000 and row.data["timeline"] == "this quarter"
    assert problems == []


async def test_a_stale_completion_shows_why_on_the_page_and_changes_nothing(
    site: Site, context: BrowserContext
) -> None:
    api = site.api
    instance = await api.start("quote-follow-up", quote(owner="ben"))
    task = await api.open_task(instance, "call-customer")
    page, problems = await new_page(context)
    await sign_in(page, site, "ben")
    card = page.locator(f'[data-task="{task.id}"]')
    await expect(card).to_be_visible()

    # Ben completes it elsewhere (the CLI, another tab) while this page still offers it.
    answer = await api.post(f"/api/tasks/{task.id}/complete", "ben", {"outcome": "lost"})
    assert answer.status_code == 200, answer.text
    async with page.expect_response(lambda r: r.url.endswith("/complete")) as sent:
        await card.get_by_role("button", name="reached").click()
    assert (await sent.value).status == 409

    error = page.locator(".notice-error")
    await expect(error).to_contain_text(f"task {task.id} is completed (lost by ben)")
    await expect(error).to_contain_text("no longer open")
    # the first completion's close is written just after its update is answered
    closed = await api.until(
        lambda: (row := api.row(Task, task.id)).status != "open" and row, "the close written"
    )
    assert (closed.status, closed.outcome) == ("completed", "lost")
    assert problems == []


async def test_a_manager_sees_a_breach_arrive_without_reloading_and_acknowledges_it(
    site: Site, context: BrowserContext
) -> None:
    api = site.api
    instance = await api.start("lead-follow-up", scripted_lead("chloe"))
    task = await api.open_task(instance, "first-call")
    page, problems = await new_page(context)
    await sign_in(page, site, "maria", then="/alerts")
    await expect(page.locator("#alerts-empty")).to_be_visible()
    await page.evaluate("window.dulyMarker = 'same page'")  # gone if the page reloads

    await api.sleep_until(task.due_at + timedelta(minutes=1))  # past the 1-business-hour SLA
    breach = page.locator(".alert.level-breach")
    await expect(breach).to_have_count(1, timeout=15_000)
    await expect(breach).to_contain_text(XSS)
    await expect(page.locator("#nav-alert-count")).not_to_have_text("0")
    assert await page.evaluate("window.dulyMarker") == "same page"

    await breach.get_by_role("button", name="Acknowledge").click()
    await page.wait_for_url(re.compile(r"/alerts\?state=open"))
    await expect(page.locator(".alert.level-breach")).to_have_count(0)
    with api.sessions() as session:
        [row] = session.exec(
            select(Alert).where(Alert.instance_id == instance, Alert.level == "breach")
        ).all()
    assert row.acknowledged_by == "maria" and row.acknowledged_at is not None

    # The acknowledged alert links to its instance: the flowchart marks the current step,
    # and the history shows the breach.
    await page.goto(f"{site.url}/alerts?state=acknowledged")
    await page.locator(".alert.level-breach").get_by_role("link", name="Open instance").click()
    await expect(page.locator("h1")).to_have_text(
        "Respond to every inbound lead within one business hour"
    )
    current = page.locator('#diagram g.duly-current[aria-current="step"]')
    await expect(current).to_have_attribute("data-step", "first-call")
    await expect(page.locator("#sla-events")).to_contain_text("breach")
    await expect(page.locator("pre.data")).to_contain_text(XSS)
    assert problems == []


async def test_on_a_phone_every_navigation_entry_is_on_screen(site: Site, browser: Browser) -> None:
    context = await browser.new_context(viewport=PHONE)
    try:
        page, problems = await new_page(context)
        await sign_in(page, site, "ana")
        links = page.locator("nav.nav a")
        await expect(links).to_have_text(
            [re.compile("Inbox"), re.compile("Alerts"), "Instances", "Definitions", "Dashboard"]
        )
        for index in range(await links.count()):
            box = await links.nth(index).bounding_box()
            assert box is not None
            assert 0 <= box["x"] and box["x"] + box["width"] <= PHONE["width"], box
        assert problems == []
    finally:
        await context.close()
