"""`duly up` runs the monitors: a two-second monitor is checked by the embedded stack.

(A firing later than its interval is skipped, so a one-second monitor could see every slot
skipped on a busy machine.)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlmodel import select
from test_stack import Up, free_port

from duly.store.db import make_engine, session_factory
from duly.store.models import Alert, MonitorCheck

from .test_scheduler import definitions_with

pytestmark = pytest.mark.slow

EMPTY_QUEUE = """\
monitor: support-idle
title: Tell Omar when support has nothing open
schedule: {every: 2 seconds}
measure: open_tasks
filter: {team: support}
threshold: {below: 1}
notify: [manager]
"""


async def test_duly_up_checks_the_monitors_and_stops_cleanly(tmp_path: Path) -> None:
    up = Up(tmp_path / "data", free_port(), free_port())
    up.env["DULY_DEFINITIONS"] = str(definitions_with(tmp_path, {"support-idle": EMPTY_QUEUE}))
    await up.start()
    try:
        await up.wait_ready()
        assert "Monitors:" in up.text() and "support-idle, every 2 seconds" in up.text()
        engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'duly.db'}")
        sessions = session_factory(engine)
        deadline = time.monotonic() + 40
        while True:
            with sessions() as session:
                checks = session.exec(select(MonitorCheck)).all()
            if len(checks) >= 2 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
        assert len(checks) >= 2, up.text()
        assert await up.interrupt() == 0, up.text()
        with sessions() as session:
            alerts = session.exec(select(Alert)).all()
        # nothing open on support: one crossing, one alert to its manager, however many checks
        assert [(a.recipient, a.level) for a in alerts] == [("omar", "threshold")]
        assert [c.transition for c in checks].count("crossed") == 1
        engine.dispose()
    finally:
        await up.cleanup()
