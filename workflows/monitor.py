"""MonitorWorkflow: one check of a periodic monitor, for one time slot.

The scheduler (duly/monitors/scheduler.py) starts one per firing, with an id naming the monitor
and the slot (`monitor/support-backlog/2026-11-30T09:15Z`), so a slot runs once however many
workers fire it. The workflow measures, then records the check, which alerts on a crossing or
a recovery. Deterministic: the time measured at is `workflow.now()`, every read and write is an
activity; no scheduling logic lives here.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from duly.monitors.messages import (
        MONITOR_WORKFLOW,
        MeasureInput,
        MonitorInput,
        MonitorResult,
        RecordCheckInput,
    )
    from workflows.contracts import MonitorContract


@workflow.defn(name=MONITOR_WORKFLOW)
class MonitorWorkflow:
    """Checks one monitor once: measure, then record the check and alert on a transition."""

    @workflow.run
    async def run(self, input: MonitorInput) -> MonitorResult:
        """Measure the monitor now and record what it found."""
        at = workflow.now()
        measured = await MonitorContract.measure.run(
            MeasureInput(monitor=input.monitor, at=at, period=input.period, timezone=input.timezone)
        )
        recorded = await MonitorContract.record.run(
            RecordCheckInput(
                monitor=input.monitor,
                slot=input.slot,
                value=measured.value,
                checked_at=at,
                manager_team=input.manager_team,
            )
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
