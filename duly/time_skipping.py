"""duly's real worker on Temporal's time-skipping test server, for runs on simulated time.

`duly demo` and `duly simulate` both run the shipped worker (`ProcessWorkflow`, every activity,
the database the settings name) against a test server whose clock jumps ahead whenever nothing
is running, so weeks of work take minutes. This module starts that pair, beside an SMTP server
that accepts every email the processes send and keeps it in memory only.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiosmtpd.controller import Controller
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime, TelemetryConfig
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import UnsandboxedWorkflowRunner

from activities.actions import ActionHandler
from duly import temporal_binaries
from duly.local_activities import LocalActivities
from duly.settings import Settings


@dataclass
class SkippingWorker:
    """A running time-skipping test server with duly's worker polling it.

    Attributes:
        env: The test server's environment: its client, its clock (`sleep`, `get_current_time`).
        task_queue: The queue the worker polls: start instances there.
        emails: Every email the processes sent, as received by the in-memory SMTP server.
    """

    env: WorkflowEnvironment
    task_queue: str
    emails: list[bytes]


class ServerClock:
    """The test server's time, read from it now and then, and followed in between.

    Between two sleeps the test server's clock runs as fast as real time, and a sleep moves it
    on by exactly what was asked; so its time is known without a round trip to ask for it
    after each of a run's thousands of sleeps (a twentieth of a run's time). A round trip makes
    the time followed fall behind by about half a millisecond; it is read again every `RESYNC`
    sleeps, so that cannot add up to more than a few hundredths of a second.
    """

    RESYNC = 64

    def __init__(self, env: WorkflowEnvironment) -> None:
        self.env = env
        self.sleeps = 0
        self.at = datetime.min.replace(tzinfo=UTC)
        self.since = time.monotonic()

    async def read(self) -> datetime:
        """Ask the test server for its time, and follow it from there."""
        self.at = (await self.env.get_current_time()).astimezone(UTC)
        self.since = time.monotonic()
        return self.at

    def now(self) -> datetime:
        """The test server's time, as followed."""
        return self.at + timedelta(seconds=time.monotonic() - self.since)

    async def sleep(self, duration: timedelta) -> datetime:
        """Let the test server's time run on by `duration`; its time then."""
        after = self.now() + duration
        await self.env.sleep(duration)
        self.sleeps += 1
        if self.sleeps % self.RESYNC == 0:
            return await self.read()
        self.at, self.since = after, time.monotonic()
        return after


class LoopThreadExecutor(ThreadPoolExecutor):
    """Runs each call on the event loop's thread, between two of its callbacks.

    A simulated run is one chain: the driver waits for the engine, which waits for the test
    server, so the worker's threads never run side by side, and handing each of a run's
    ~15,000 activations and activities to a thread and back cost about a twentieth of its
    time. The SDK takes a `ThreadPoolExecutor` for both; this one starts no thread. An
    activity run here must not wait on the loop (a heartbeat would): duly's never do.
    """

    def __init__(self, max_workers: int) -> None:
        super().__init__(max_workers=max_workers)  # only read by the SDK's own checks

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        """Run `fn` as soon as the loop is free (not inside the caller's task); its future."""
        loop = asyncio.get_running_loop()
        future: Future[Any] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as error:  # the caller gets it, as from a thread
                _restore(loop)
                future.set_exception(error)
            else:
                _restore(loop)
                future.set_result(result)

        loop.call_soon(run)
        return future


def _restore(loop: asyncio.AbstractEventLoop) -> None:
    """Make `loop` the running loop again.

    A workflow activation runs the instance's own loop, which unsets it when it stops; the
    SDK's debug mode, which also runs activations on the loop's thread, restores it the same way.
    """
    asyncio.events._set_running_loop(loop)


@contextlib.asynccontextmanager
async def skipping_worker(
    settings: Settings,
    *,
    name: str,
    telemetry: TelemetryConfig | None = None,
    handlers: Mapping[str, ActionHandler] | None = None,
) -> AsyncIterator[SkippingWorker]:
    """Start a time-skipping test server and duly's worker on it; stop both on exit.

    The worker runs every activity inside its workflow task (`duly.local_activities`) and its
    workflows outside the sandbox. The sandbox only guards: it imports each instance's modules
    again and runs every payload's serialization context in them, a sixth to a quarter of a
    simulated run's CPU, while the modules that keep state across instances are passed
    through it anyway (`workflows.sandbox`). `duly worker` and the workflow tests keep it, so
    workflow code that reads the clock or a file is refused there.

    The worker stops once no activity is running: the SDK's core keeps a timer for each local
    activity running when its worker stops, which panics onto the terminal when it fires. The
    Temporal runtime is the run's own, so such a timer goes with it.

    Args:
        settings: The worker's settings (its database among them); its SMTP server is replaced
            by the in-memory one.
        name: Names the task queue (`demo`, `simulate`).
        telemetry: How the SDK's core logs; the SDK's default if None.
        handlers: The actions steps may `do` (`build_worker`'s).

    Yields:
        The server's environment, the worker's task queue and the emails caught so far.
    """
    from duly.worker import ACTIVITY_THREADS, WORKFLOW_TASK_SLOTS, build_worker

    async with mail_sink() as (smtp_port, caught):
        worker_settings = settings.model_copy(
            update={"smtp_host": "127.0.0.1", "smtp_port": smtp_port}
        )
        env = await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=str(temporal_binaries.test_server_path()),
            data_converter=pydantic_data_converter,
            runtime=Runtime(telemetry=telemetry or TelemetryConfig()),
        )
        local = LocalActivities()
        try:
            with LoopThreadExecutor(ACTIVITY_THREADS) as pool:
                worker = build_worker(
                    env.client,
                    worker_settings,
                    task_queue=f"duly-{name}-{uuid.uuid4().hex[:8]}",
                    activity_executor=pool,
                    local_activities=local,
                    runner=UnsandboxedWorkflowRunner(),
                    workflow_task_executor=LoopThreadExecutor(WORKFLOW_TASK_SLOTS),
                    handlers=handlers,
                )
                async with worker:
                    try:
                        yield SkippingWorker(env, worker.task_queue, caught)
                    finally:
                        await local.settled()
        finally:
            await env.shutdown()


@contextlib.asynccontextmanager
async def mail_sink() -> AsyncIterator[tuple[int, list[bytes]]]:
    """An SMTP server on a free 127.0.0.1 port that accepts mail and keeps it in memory only."""
    caught: list[bytes] = []

    class _Catch:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            caught.append(bytes(envelope.content or b""))
            return "250 Message accepted for delivery"

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    controller = Controller(_Catch(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, caught
    finally:
        controller.stop()
