"""MonitorWorkflow: one check of a periodic monitor, for one time slot.

The scheduler (duly/monitors/scheduler.py) starts one per firing, with an id naming the monitor
and the slot (`monitor/support-backlog/2026-11-30T09:15Z`), so a slot runs once however many
workers fire it. The workflow measures, then records the check, which alerts on a crossing or
a recovery. Deterministic: the time measured at is `workflow.now()`, every read and write is an
activity; no scheduling logic lives here.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from duly.monitors.messages import (
        MEASURE_ACTIVITY,
        MONITOR_WORKFLOW,
        RECORD_ACTIVITY,
        MeasureInput,
        MeasureResult,
        MonitorInput,
        MonitorResult,
        RecordCheckInput,
        RecordCheckResult,
    )

# Reads and writes to the database: retry until it answers, as the process workflow's do
STORE_TIMEOUT = timedelta(seconds=30)
STORE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
)


@workflow.defn(name=MONITOR_WORKFLOW)
class MonitorWorkflow:
    """Checks one monitor once: measure, then record the check and alert on a transition."""

    @workflow.run
    async def run(self, input: MonitorInput) -> MonitorResult:
        """Measure the monitor now and record what it found."""
        at = workflow.now()
        measured: MeasureResult = await workflow.execute_activity(
            MEASURE_ACTIVITY,
            MeasureInput(
                monitor=input.monitor, at=at, period=input.period, timezone=input.timezone
            ),
            result_type=MeasureResult,
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
        )
        recorded: RecordCheckResult = await workflow.execute_activity(
            RECORD_ACTIVITY,
            RecordCheckInput(
                monitor=input.monitor,
                slot=input.slot,
                value=measured.value,
                checked_at=at,
                manager_team=input.manager_team,
            ),
            result_type=RecordCheckResult,
            start_to_close_timeout=STORE_TIMEOUT,
            retry_policy=STORE_RETRY,
        )
        if recorded.transition is not None:
            workflow.logger.info(
                "monitor %s %s at %s", input.monitor.monitor, recorded.transition, measured.value
            )
        return MonitorResult(
            monitor=input.monitor.monitor,
            slot=input.slot,
            value=measured.value,
            state=recorded.state,
            transition=recorded.transition,
            notified=recorded.notified,
        )
