"""A caller cancelled while it waits on an instance is cancelled, not told the instance is silent.

The SDK reports a cancelled update call as `WorkflowUpdateRPCTimeoutOrCancelledError`, the
error of an instance that did not answer in time. `duly demo` takes that as a refused
completion and goes on: a Ctrl-C that came during a completion was lost, and the demo ran to
its end (tests/test_demo.py met it once in a full run).
"""

from __future__ import annotations

import asyncio

import pytest
from temporalio.testing import WorkflowEnvironment

from duly.client import complete_task
from workflows.messages import WORKFLOW_NAME


async def test_a_completion_cancelled_while_it_waits_is_cancelled(
    time_skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    # An instance no worker runs: the completion's update can only wait
    await time_skipping_env.client.start_workflow(
        WORKFLOW_NAME, id="lead-follow-up/L-1", task_queue=task_queue
    )
    call = asyncio.create_task(
        complete_task(time_skipping_env.client, "lead-follow-up/L-1/r/first-call/1", "reached")
    )
    await asyncio.sleep(0.5)  # on its way, waiting for a worker
    assert not call.done()
    call.cancel()  # Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await call
