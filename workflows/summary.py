"""WeeklySummaryWorkflow: each manager's weekly summary, sent once per week.

Its id names the week (`weekly-summary/2026-W48`, see `weekly_summary_id`; a run for some
managers only also names them) and is never reused, so two triggers of one week (two workers'
schedulers, a repeated `duly summary --send`) run it once; the outbox's keys make a repeat
harmless even after Temporal forgot the run. The work is one activity (`SummaryContract`,
implemented in activities/summary.py); the workflow only names the moment.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.contracts import SummaryContract
    from workflows.summary_messages import (
        WEEKLY_SUMMARY_WORKFLOW,
        WeeklySummaryInput,
        WeeklySummaryResult,
    )


def weekly_summary_id(week: str, managers: list[str] | None = None) -> str:
    """The workflow id of a week's summary run: for every manager, or for `managers` only.

    A run for some managers has an id of its own, so sending one manager's summary early never
    takes the id of the run for everyone (the outbox's keys still send each summary once).
    """
    if managers is None:
        return f"weekly-summary/{week}"
    return f"weekly-summary/{week}/{'+'.join(sorted(managers))}"


@workflow.defn(name=WEEKLY_SUMMARY_WORKFLOW)
class WeeklySummaryWorkflow:
    """Queues every manager's summary of one week."""

    @workflow.run
    async def run(self, input: WeeklySummaryInput) -> WeeklySummaryResult:
        """Build and queue the summaries, judging open breaches at the workflow's time."""
        request = input.model_copy(update={"now": input.now or workflow.now()})
        return await SummaryContract.send_weekly_summaries.run(request)
