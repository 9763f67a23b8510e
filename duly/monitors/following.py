"""Keep the worker's monitor schedule on the published set, without a restart.

The worker checks the published revision every few seconds (one indexed `max()`); when an
admin publishes a new set, its monitors are registered, changed ones replaced, and removed ones
stop firing.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import structlog

from duly.monitors.scheduler import Scheduler
from duly.published import PublishedDefinitions

log = structlog.get_logger(__name__)

POLL = timedelta(seconds=5)


def catch_up(
    scheduler: Scheduler, live: PublishedDefinitions, seen: int | None, *, task_queue: str
) -> int | None:
    """Apply the published set's monitors if its revision is not `seen`; the revision now."""
    definitions = live.current()
    if live.revision != seen:
        scheduler.sync_monitors(definitions, task_queue=task_queue)
        log.info("monitors follow the published set", revision=live.revision)
    return live.revision


async def follow(
    scheduler: Scheduler, live: PublishedDefinitions, *, task_queue: str, every: timedelta = POLL
) -> None:
    """Catch up with every publish until cancelled; a failed check is logged and retried."""
    seen = live.revision
    while True:
        await asyncio.sleep(every.total_seconds())
        try:
            seen = await asyncio.to_thread(catch_up, scheduler, live, seen, task_queue=task_queue)
        except Exception:  # the database away for a moment: the next check tries again
            log.exception("published set not read")
