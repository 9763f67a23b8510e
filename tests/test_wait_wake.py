"""A waiting instance says when it wakes, and which event would end the wait early."""

from __future__ import annotations

import uuid
from datetime import timedelta

from test_process_workflow import (  # the workflow fixtures: one engine, one task queue
    BERLIN,
    Engine,
    case,
    engine,  # noqa: F401  (the fixture)
    next_week,
    quote,
)

from duly.language import business_time


async def test_a_wait_for_a_business_day_shows_its_wake_instant_then_clears_it(
    engine: Engine,  # noqa: F811
) -> None:
    monday = await next_week(engine, "quote-follow-up", 10)
    await engine.sleep_until(monday)
    handle = await engine.start("quote-follow-up", quote(f"Q-{uuid.uuid4().hex[:6]}"))
    await engine.complete(handle, "call-customer", "voicemail")
    state = await engine.until(handle, lambda s: s.step == "wait-a-day")
    calendar = engine.definitions.processes["quote-follow-up"].calendar
    entered = next(h.at for h in reversed(state.history) if h.step == "wait-a-day")
    expected = business_time.add_business_seconds(calendar, entered, 8 * 3600)
    assert state.wake_at is not None
    assert abs(state.wake_at - expected) < timedelta(seconds=1)
    assert state.wake_event is None  # a plain wait: only time ends it
    await engine.sleep_until(state.wake_at + timedelta(seconds=5))
    state = await engine.open_task(handle, "call-customer")
    assert state.wake_at is None and state.wake_event is None
    await engine.complete(handle, "call-customer", "lost")
    await handle.result()


async def test_a_wait_until_an_event_names_the_event_that_ends_it_early(
    engine: Engine,  # noqa: F811
) -> None:
    monday = await next_week(engine, "support-case", 10, zone=BERLIN)
    await engine.sleep_until(monday)
    handle = await engine.start("support-case", case())
    await engine.complete(handle, "respond", "answered")
    await engine.complete(handle, "investigate", "need-info")
    state = await engine.until(handle, lambda s: s.step == "waiting-on-customer")
    step = engine.definitions.processes["support-case"].spec.steps["waiting-on-customer"]
    assert state.wake_event == getattr(step, "until", None) == "case.customer_replied"
    assert state.wake_at is not None and state.wake_at > monday
    await engine.end(handle, "case.closed")
