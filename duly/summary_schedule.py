"""When the weekly summary runs: `WeeklySummaryWorkflow` started once per week.

The worker's scheduler starts it each Monday for the week before (`ScheduledStart`), and
`duly summary --send` for any week (`start_week`); the workflow's id names the week, so a week
runs once however often it is asked for. What the summary says is `duly.summary`'s.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from duly.summary import last_week, parse_week
from workflows.summary import weekly_summary_id
from workflows.summary_messages import WEEKLY_SUMMARY_WORKFLOW, WeeklySummaryInput

SCHEDULE_JOB = "weekly-summary"
SCHEDULE_CRON = "0 8 * * mon"
"""Mondays at 08:00 UTC: the week before is complete everywhere from Asia to the Americas."""


async def start_week(
    client: Client, week: str, *, task_queue: str, managers: list[str] | None = None
) -> bool:
    """Start `WeeklySummaryWorkflow` for a week unless it ran (or runs); True if this started it.

    Raises:
        SummaryError: The week is not an ISO week.
    """
    parse_week(week)
    try:
        await client.start_workflow(
            WEEKLY_SUMMARY_WORKFLOW,
            WeeklySummaryInput(week=week, managers=managers),
            id=weekly_summary_id(week, managers),
            task_queue=task_queue,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )
    except WorkflowAlreadyStartedError:
        return False
    return True


class ScheduledStart:
    """The scheduler's job: at each Monday slot, start the summary of the week before."""

    def __init__(self, task_queue: str) -> None:
        self.task_queue = task_queue

    # A Monday missed while no worker ran is started when one is back, any day that week
    misfire_grace = timedelta(days=6)

    async def __call__(self, client: Client, at: datetime) -> bool:
        """Start the run for the last complete week before the slot."""
        return await start_week(client, last_week(at), task_queue=self.task_queue)
