"""Run every activity a workflow starts as a local activity: for runs on simulated time only.

Temporal's time-skipping test server keeps a record of every lock it took on its clock (one
per activity task, workflow task and timer) and searches the whole record each time one of its
timers fires, so each step of a long simulation costs more than the one before (bench/README.md:
its CPU per instance of a plain workflow tripled by 2,400 instances). An activity run inside its
workflow task (a local activity) never reaches the server, whose record then grows by the
workflow tasks and timers alone. The workflows, activities and their retry policies are the
ones production runs; only where an activity runs changes, so `duly simulate` and `duly demo`
use this and `duly worker` does not (there, an activity on the server's queue outlives the
worker that took it and is taken first when it is an SLA's).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio.exceptions import ActivityError, FailureError
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
    StartActivityInput,
    StartLocalActivityInput,
    WorkflowInboundInterceptor,
    WorkflowInterceptorClassInput,
    WorkflowOutboundInterceptor,
)
from temporalio.workflow import ActivityHandle


class LocalActivities(Interceptor):
    """A worker interceptor that starts each workflow's activities as local activities.

    It also counts the activities running, so the worker can stop once none does
    (`settled`): the SDK's core keeps a timer for each local activity running when its worker
    stops, and one firing later, into the stopped worker, panics onto the process's terminal.
    """

    def __init__(self) -> None:
        self._running = 0
        self._finished = asyncio.Event()

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Count each activity while it runs."""
        return _Counted(next, self)

    async def settled(self) -> None:
        """Return once no activity is running (at once if none is)."""
        while self._running:
            self._finished.clear()
            await self._finished.wait()

    def workflow_interceptor_class(
        self, input: WorkflowInterceptorClassInput
    ) -> type[WorkflowInboundInterceptor]:
        """Wrap every workflow's calls out."""
        return _Inbound


class _Counted(ActivityInboundInterceptor):
    def __init__(self, next: ActivityInboundInterceptor, counter: LocalActivities) -> None:
        super().__init__(next)
        self._counter = counter

    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        self._counter._running += 1
        try:
            return await super().execute_activity(input)
        finally:
            self._counter._running -= 1
            self._counter._finished.set()


class _Inbound(WorkflowInboundInterceptor):
    def init(self, outbound: WorkflowOutboundInterceptor) -> None:
        super().init(_Outbound(outbound))


class _Outbound(WorkflowOutboundInterceptor):
    def start_activity(self, input: StartActivityInput) -> ActivityHandle:  # type: ignore[type-arg]
        handle = self.next.start_local_activity(
            StartLocalActivityInput(
                activity=input.activity,
                args=input.args,
                activity_id=input.activity_id,
                schedule_to_close_timeout=input.schedule_to_close_timeout,
                schedule_to_start_timeout=input.schedule_to_start_timeout,
                start_to_close_timeout=input.start_to_close_timeout,
                retry_policy=input.retry_policy,
                # every retry after a timer, which the test server skips: the core would wait
                # out a shorter backoff in real time, holding the workflow task, and leave the
                # first attempt's timeout behind, to fire into a stopped worker
                local_retry_threshold=timedelta(milliseconds=1),
                cancellation_type=input.cancellation_type,
                headers=input.headers,
                summary=input.summary,
                event_groups=input.event_groups,
                arg_types=input.arg_types,
                ret_type=input.ret_type,
            )
        )
        # A local activity's failure reaches the workflow bare; a remote one's inside an
        # ActivityError, which is what workflows catch
        return asyncio.ensure_future(_as_remote(handle, input))  # type: ignore[return-value]


async def _as_remote(handle: ActivityHandle[Any], input: StartActivityInput) -> Any:
    try:
        return await handle
    except (ActivityError, asyncio.CancelledError):
        raise
    except FailureError as err:
        raise ActivityError(
            f"activity {input.activity} failed",
            scheduled_event_id=0,
            started_event_id=0,
            identity="",
            activity_type=input.activity,
            activity_id=input.activity_id or "",
            retry_state=None,
        ) from err
