"""Record workflow histories of the shipped processes for tests/test_replay.py.

Run after a deliberate change to the interpreter's commands (one that needs a new definition
version or `workflow.patched`): `.venv/bin/python scripts/record_histories.py`. The replay test
then proves later changes keep these histories deterministic.
"""

from __future__ import annotations

import asyncio
import socket
import sys
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402
from temporalio.client import WorkflowHandle  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.process import ProcessActivities  # noqa: E402
from duly.client import start_instance  # noqa: E402
from duly.language.loader import load_definitions  # noqa: E402
from duly.settings import Settings  # noqa: E402
from duly.store.crud import sync_org  # noqa: E402
from duly.store.db import create_all, make_engine, session_factory  # noqa: E402
from duly.temporal_binaries import test_server_path  # noqa: E402
from workflows.contracts import ProcessContract, implementations  # noqa: E402
from workflows.messages import CompleteTaskInput, EventInput, InstanceState, workflow_of  # noqa: E402
from workflows.process import ProcessWorkflow  # noqa: E402
from workflows.sandbox import workflow_runner  # noqa: E402

OUT = ROOT / "tests" / "histories"


class _Sink:
    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        return "250 OK"


async def until_task(handle: WorkflowHandle[Any, Any], step: str) -> InstanceState:
    """Wait (in real time) until the instance has a task open at `step`."""
    for _ in range(400):
        state = await handle.query("state", result_type=InstanceState)
        if state.task is not None and state.task.step == step:
            return state
        await asyncio.sleep(0.05)
    raise RuntimeError(f"no task at {step}")


async def complete(
    handle: WorkflowHandle[Any, Any], step: str, outcome: str, **fields: Any
) -> None:
    """Complete the task open at `step` with an outcome."""
    state = await until_task(handle, step)
    assert state.task is not None
    await handle.execute_update(
        "complete_task",
        CompleteTaskInput(task_id=state.task.task_id, outcome=outcome, fields=fields),
    )


async def main() -> None:
    """Run each shipped process along a path that exercises its features, save the histories."""
    definitions = load_definitions(ROOT / "definitions")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    smtp = Controller(_Sink(), hostname="127.0.0.1", port=port)
    smtp.start()
    folder = tempfile.mkdtemp()
    db = make_engine(f"sqlite:///{folder}/duly.db")
    create_all(db)
    sessions = session_factory(db)
    with sessions() as session:
        sync_org(session=session, org=definitions.org)
        session.commit()
    settings = Settings(smtp_host="127.0.0.1", smtp_port=port)
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=str(test_server_path()), data_converter=pydantic_data_converter
    )
    queue = f"record-{uuid.uuid4()}"
    async with env:
        with ThreadPoolExecutor(8) as executor:
            async with Worker(
                env.client,
                task_queue=queue,
                workflows=[ProcessWorkflow],
                activities=implementations(
                    [ProcessContract], [ProcessActivities(sessions, settings)]
                ),
                activity_executor=executor,
                workflow_runner=workflow_runner(),
            ):
                handles = []

                async def start(process: str, data: dict[str, Any]) -> WorkflowHandle[Any, Any]:
                    instance = await start_instance(
                        env.client, definitions, process, data, task_queue=queue
                    )
                    handle = env.client.get_workflow_handle(workflow_of(instance, task=False))
                    handles.append((process, handle))
                    return handle

                quote = await start(
                    "quote-follow-up",
                    {
                        "quote": {"id": "Q-1", "number": "Q-1", "amount": 80_000},
                        "contact": {"name": "Lee", "email": "lee@example.com"},
                        "owner": "ana",
                    },
                )
                await until_task(quote, "call-customer")
                await env.sleep(timedelta(days=6))  # every rung of the ladder fires
                await complete(quote, "call-customer", "voicemail")
                await env.sleep(timedelta(days=6))  # past its wait-a-day, whatever the weekday
                await complete(quote, "call-customer", "reached")
                await complete(quote, "manager-review", "done")
                await quote.result()

                case = await start(
                    "support-case",
                    {"case": {"id": "C-1", "priority": "normal", "contact_email": "c@example.com"}},
                )
                await complete(case, "respond", "answered")
                await complete(case, "investigate", "need-info")
                await env.sleep(timedelta(days=2))
                await case.signal(
                    "event", EventInput(id="r1", type="case.customer_replied", data={})
                )
                await case.signal(
                    "event",
                    EventInput(id="p1", type="case.updated", data={"case": {"priority": "urgent"}}),
                )
                await complete(case, "investigate", "fixed")
                await case.result()

                lead = await start(
                    "lead-follow-up",
                    {"lead": {"id": "L-1", "name": "Kim", "source": "web"}, "owner": "ben"},
                )
                await until_task(lead, "first-call")
                await env.sleep(timedelta(days=3))  # every rung, the `do:` list at 200% too
                await complete(lead, "first-call", "reached")
                # `suspect` needs neither budget nor timeline (required for other outcomes)
                await complete(lead, "qualify", "suspect", reason="no project this year")
                await lead.result()

                OUT.mkdir(exist_ok=True)
                for process, handle in handles:
                    history = await handle.fetch_history()
                    (OUT / f"{process}.json").write_text(history.to_json(), encoding="utf-8")
                    print(f"recorded {process}: {len(history.events)} events")
    smtp.stop()


if __name__ == "__main__":
    asyncio.run(main())
