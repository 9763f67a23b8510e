"""The worker leaves its start-up objects out of Python's garbage collections while it runs.

Full collections stop the whole worker; with the start-up objects frozen each walks only what
came after (bench/README.md measures the pauses and the breach latency they cost).
"""

from __future__ import annotations

import asyncio
import gc
from pathlib import Path

from support import poll
from temporalio.testing import WorkflowEnvironment

from duly.settings import Settings
from duly.store.db import create_all, make_engine
from duly.temporal_client import connect
from duly.worker import run_worker


async def test_start_up_objects_are_frozen_while_the_worker_runs_and_thawed_after(
    tmp_path: Path, dev_server_env: WorkflowEnvironment, task_queue: str
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'duly.db'}")
    create_all(make_engine(settings.database_url))
    client = await connect(dev_server_env.client.service_client.config.target_host)
    assert gc.get_freeze_count() == 0
    stop = asyncio.Event()
    worker = asyncio.create_task(run_worker(client, settings, stop, task_queue=task_queue))
    try:
        frozen = await poll(gc.get_freeze_count, timeout=30, what="the start-up objects frozen")
        # everything start-up built: modules, settings, the client, the activities
        assert frozen > 10_000
    finally:
        stop.set()
        await worker
    assert gc.get_freeze_count() == 0
