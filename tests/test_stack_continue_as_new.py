"""On a real `duly up`: an instance that has continued as new still answers, by its id and by its
key, through the API and the command line, and so does it once ended and its key started again."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import poll
from test_stack import DULY, ROOT, Up, free_port

from duly.language.loader import load_definitions
from duly.services.auth import issue_token
from duly.services.signing import signed_headers
from duly.store.db import make_engine, session_factory, write_session
from duly.temporal_client import connect
from workflows.messages import WORKFLOW_NAME, ProcessInput, ProcessResult, instance_id

pytestmark = pytest.mark.slow

SECRET = "stack-secret-" + "x" * 24
# a few events past this many and the instance continues as new at its next step
HISTORY_LIMIT = 40
DATA_UPDATES = 12


def quote_data(key: str, amount: int) -> dict[str, Any]:
    return {
        "quote": {"id": key, "number": key, "amount": amount},
        "contact": {"name": "Ann Lee", "email": "ann@example.com"},
        "owner": "sam",
    }


async def duly_cli(up: Up, *args: str) -> str:
    """Run a `duly` command against the stack; its stdout (it must succeed)."""
    process = await asyncio.create_subprocess_exec(
        *DULY,
        *args,
        cwd=ROOT,
        env=up.env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await process.communicate()
    assert process.returncode == 0, f"duly {' '.join(args)}: {err.decode()}"
    return out.decode()


async def test_an_instance_that_continued_as_new_answers_by_id_and_key(tmp_path: Path) -> None:
    up = Up(tmp_path / "data", free_port(), free_port())
    up.env["DULY_EVENTS_SECRET"] = SECRET
    await up.start()
    try:
        await up.wait_ready()
        engine = make_engine(f"sqlite:///{tmp_path / 'data' / 'duly.db'}")
        with write_session(session_factory(engine)) as session:
            token = issue_token(session=session, user_id="sam")
        engine.dispose()
        auth = {"Authorization": f"Bearer {token}"}
        key = f"Q-{uuid.uuid4().hex[:6]}"
        workflow = f"quote-follow-up/{key}"

        # started as duly starts it, with a short history so that it continues as new soon
        client = await connect(up.address)
        compiled = load_definitions(ROOT / "definitions").processes["quote-follow-up"]
        handle = await client.start_workflow(
            WORKFLOW_NAME,
            ProcessInput(
                definition=compiled,
                business_key=key,
                data=quote_data(key, 100),
                history_limit=HISTORY_LIMIT,
            ),
            id=workflow,
            task_queue="duly",
            result_type=ProcessResult,
        )
        first_run = handle.first_execution_run_id or handle.run_id or ""
        instance = instance_id(workflow, first_run)

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{up.web_port}") as http:

            async def detail(address: str) -> dict[str, Any]:
                response = await http.get(f"/api/instances/{address}", headers=auth)
                assert response.status_code == 200, response.text
                shown: dict[str, Any] = response.json()
                return shown

            async def open_task() -> dict[str, Any] | None:
                response = await http.get(f"/api/instances/{instance}", headers=auth)
                if response.status_code != 200:
                    return None  # the instance row is written by the worker, just after start
                shown = response.json()
                state = shown["state"]
                if state is None or state["task"] is None or not shown["tasks"]:
                    return None
                return dict(state["task"])

            task = await poll(open_task, timeout=60, what="the instance's open task")

            # data updates (the trigger again, for the live key) make its history long
            for amount in range(DATA_UPDATES):
                event = {"id": f"upd-{key}-{amount}", "type": "quote.sent"}
                event["data"] = quote_data(key, 1000 + amount)  # type: ignore[assignment]
                body = json.dumps(event).encode()
                answer = await http.post(
                    "/api/events", content=body, headers=signed_headers(SECRET, body)
                )
                assert answer.json() == {
                    "status": "accepted",
                    "event_id": event["id"],
                    "instances": [instance],
                }, answer.text

            done = await http.post(
                f"/api/tasks/{task['task_id']}/complete",
                headers=auth,
                json={"outcome": "voicemail"},
            )
            assert done.status_code == 200, done.text

            async def continued() -> bool:
                described = await client.get_workflow_handle(workflow).describe()
                return described.run_id != first_run and described.status is not None

            await poll(continued, timeout=60, what="the instance to continue as new")

            async def waiting(address: str) -> dict[str, Any] | None:
                shown = await detail(address)
                state = shown["state"]
                return shown if state is not None and state["step"] == "wait-a-day" else None

            for address in (instance, workflow):
                shown = await poll(
                    lambda a=address: waiting(a), timeout=30, what=f"{address} answering"
                )
                assert shown["instance"]["id"] == instance
                assert shown["state_error"] is None
                state = shown["state"]
                assert state["instance_id"] == instance
                assert state["visits"] == {"call-customer": 1, "wait-a-day": 1}
                assert state["data"]["quote"]["amount"] == 1000 + DATA_UPDATES - 1

            from_cli = json.loads(await duly_cli(up, "state", instance))
            assert (from_cli["instance_id"], from_cli["step"]) == (instance, "wait-a-day")
            by_key = json.loads(await duly_cli(up, "show", workflow, "--json"))
            assert by_key["instance"]["id"] == instance
            assert by_key["state"]["step"] == "wait-a-day"

            # ended, and its key started again: the earlier instance still answers by its id
            won = {"id": f"won-{key}", "type": "quote.accepted", "data": {"quote": {"id": key}}}
            body = json.dumps(won).encode()
            answer = await http.post(
                "/api/events", content=body, headers=signed_headers(SECRET, body)
            )
            assert answer.json()["instances"] == [instance], answer.text
            assert (await handle.result()).result == "won"  # follows the runs to the last
            again = await http.post(
                "/api/instances",
                headers=auth,
                json={"process": "quote-follow-up", "data": quote_data(key, 5)},
            )
            assert again.status_code == 201, again.text
            newer = again.json()["instance_id"]
            assert newer != instance

            ended = json.loads(await duly_cli(up, "state", instance))
            assert (ended["instance_id"], ended["status"], ended["result"]) == (
                instance,
                "completed",
                "won",
            )
            latest = json.loads(await duly_cli(up, "state", workflow))
            assert latest["instance_id"] == newer
            shown = await poll(
                lambda: _ended(http, auth, instance), timeout=30, what="the row to end"
            )
            assert shown["instance"]["result"] == "won" and shown["state"] is None

        assert await up.interrupt() == 0, up.text()
    finally:
        await up.cleanup()


async def _ended(
    http: httpx.AsyncClient, auth: dict[str, str], instance: str
) -> dict[str, Any] | None:
    shown: dict[str, Any] = (await http.get(f"/api/instances/{instance}", headers=auth)).json()
    return shown if shown["instance"]["status"] == "completed" else None
