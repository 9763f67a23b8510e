"""Where duly's work stands in Temporal's queues: SLA work first, bulk work last.

When the worker is behind, Temporal hands out a task queue's backlog lowest priority key first
(1 to 5; 3 when none is set). An instance's workflow tasks and activities carry the instance's
key unless a call sets its own. So a breach's alert row (key 1) goes ahead of everything queued,
and the timer of a live instance (3) ahead of the start-up of instances started in bulk (4).
An instance started in bulk takes the live key once its first task is open or its first wait
begins (`ProcessContract.settle_priority`): from then on its own breaches count as much as any.

The embedded dev server keeps each task queue in one partition (`duly.stack.DevServer`): with
several, each orders only its own backlog. docs/deploy.md says the same of a real cluster.
"""

from __future__ import annotations

from temporalio.common import Priority

SLA = Priority(priority_key=1)
"""A breach's escalation (its alert row, a reassignment) and the alert of a failed instance."""

LIVE_KEY = 3
"""Temporal's default: instances started by live events, the API or the CLI."""

BULK = Priority(priority_key=4)
"""Instances started in bulk (`duly import`), until they settle at `LIVE_KEY`."""


def started_in_bulk(priority: Priority) -> bool:
    """Whether an instance's start priority is `BULK`'s (its start-up waits behind live work)."""
    return priority.priority_key == BULK.priority_key
