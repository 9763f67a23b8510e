"""On simulated time the workflows' activities run inside their workflow tasks, and fail alike."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowHandle
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from duly.local_activities import LocalActivities
from duly.time_skipping import LoopThreadExecutor


@activity.defn
def double(value: int) -> int:
    return 2 * value


@activity.defn
def refuse(value: int) -> int:
    raise ApplicationError(f"refused {value}", type="Refused", non_retryable=True)


@activity.defn
def flaky(value: int) -> int:
    if activity.info().attempt == 1:
        raise ApplicationError("not yet")  # retryable
    return value + 1


@workflow.defn(sandboxed=False)
class TwoCalls:
    @workflow.run
    async def run(self, value: int) -> str:
        doubled = await workflow.execute_activity(
            double, value, start_to_close_timeout=timedelta(seconds=10)
        )
        doubled = await workflow.execute_activity(
            flaky,
            doubled - 1,
            start_to_close_timeout=timedelta(seconds=10),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=10)),
        )
        try:
            await workflow.execute_activity(
                refuse, doubled, start_to_close_timeout=timedelta(seconds=10)
            )
        except ActivityError as err:  # what the interpreter catches around an action
            assert isinstance(err.cause, ApplicationError)
            return f"{doubled}: {err.cause.type}: {err.cause.message}"
        return "not refused"


async def _run_two_calls(
    env: WorkflowEnvironment,
    task_queue: str,
    workflow_class: type[TwoCalls],
    activities: list[Any],
    pool: ThreadPoolExecutor,
    workflow_pool: ThreadPoolExecutor | None = None,
) -> WorkflowHandle[Any, str]:
    """Run `workflow_class` on 21 with its activities local, as on simulated time."""
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[workflow_class],
        activities=activities,
        activity_executor=pool,
        workflow_task_executor=workflow_pool,
        interceptors=[LocalActivities()],
    ):
        handle = await env.client.start_workflow(
            workflow_class.run, 21, id=f"two-calls-{task_queue}", task_queue=task_queue
        )
        assert await handle.result() == "42: Refused: refused 42"
    return handle


async def test_activities_run_inside_the_workflow_task_retry_on_timers_and_fail_as_activity_errors(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    with ThreadPoolExecutor(max_workers=2) as pool:
        handle = await _run_two_calls(
            time_skipping_env, task_queue, TwoCalls, [double, flaky, refuse], pool
        )
    kinds = [event.event_type async for event in handle.fetch_history_events()]
    assert EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED not in kinds  # none reached the server
    assert kinds.count(EventType.EVENT_TYPE_MARKER_RECORDED) == 4  # each attempt's result
    # the retry waited on a timer, which the test server skips, not in the worker in real time
    assert kinds.count(EventType.EVENT_TYPE_TIMER_FIRED) == 1


_threads: dict[str, set[int]] = {"activation": set(), "activity": set()}


@activity.defn(name="double")
def double_noting_thread(value: int) -> int:
    _threads["activity"].add(threading.get_ident())
    return 2 * value


@workflow.defn(name="TwoCalls", sandboxed=False)
class TwoCallsNotingThread(TwoCalls):
    @workflow.run
    async def run(self, value: int) -> str:
        _threads["activation"].add(threading.get_ident())
        return await super().run(value)


async def test_on_the_loops_thread_activations_and_activities_run_and_fail_alike(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    # how `duly simulate` and `duly demo` run them: one chain, no thread handing over
    _threads["activation"].clear()
    _threads["activity"].clear()
    loop = asyncio.get_running_loop()
    with LoopThreadExecutor(2) as pool:
        await _run_two_calls(
            time_skipping_env,
            task_queue,
            TwoCallsNotingThread,
            [double_noting_thread, flaky, refuse],
            pool,
            LoopThreadExecutor(2),
        )
        assert asyncio.get_running_loop() is loop  # still the running one after activations
    assert _threads == {"activation": {threading.get_ident()}, "activity": {threading.get_ident()}}
    assert pool._threads == set()  # it started none
