"""`duly up` as a user runs it: a subprocess with its own data dir and free ports."""

import asyncio
import contextlib
import os
import re
import signal
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from duly import client as duly_client
from duly.settings import Settings
from duly.stack import READY_LINE
from duly.temporal_client import connect
from workflows.messages import EventInput

ROOT = Path(__file__).resolve().parent.parent
DULY = [sys.executable, "-c", "from duly.cli import app; app()"]
STARTUP_TIMEOUT = 60
STOP_TIMEOUT = 20

QUOTE = {
    "quote": {"id": "Q-7", "number": "7", "amount": 1200},
    "contact": {"name": "Ann Lee", "email": "ann@example.com"},
    "owner": "sam",
}

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Up:
    """One `duly up` subprocess."""

    def __init__(self, data_dir: Path, grpc_port: int, ui_port: int) -> None:
        self.address = f"127.0.0.1:{grpc_port}"
        self.web_port = free_port()
        self.env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("DULY_")  # the developer's own settings stay out
        } | {
            "DULY_DATA_DIR": str(data_dir),
            "DULY_TEMPORAL_ADDRESS": self.address,
            "DULY_TEMPORAL_UI_PORT": str(ui_port),
            "DULY_SMTP_PORT": str(free_port()),
            "DULY_WEB_PORT": str(self.web_port),
            "DULY_DEFINITIONS": str(ROOT / "definitions"),
        }
        self.process: asyncio.subprocess.Process | None = None
        self.output: list[str] = []
        self.server_pid: int | None = None

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        self.process = await asyncio.create_subprocess_exec(
            *DULY,
            "up",
            *args,
            cwd=ROOT,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return self.process

    async def wait_ready(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async with asyncio.timeout(STARTUP_TIMEOUT):
            while True:
                line = (await self.process.stdout.readline()).decode()
                if not line:
                    stderr = await self.stderr()
                    pytest.fail(f"duly up ended before it was ready:\n{self.text()}\n{stderr}")
                self.output.append(line)
                if found := re.search(r"dev server pid (\d+)", line):
                    self.server_pid = int(found.group(1))
                if READY_LINE in line:
                    return

    async def interrupt(self) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(STOP_TIMEOUT):
            rest, _ = await self.process.communicate()
        self.output.append(rest.decode())
        return self.process.returncode if self.process.returncode is not None else -1

    async def stderr(self) -> str:
        assert self.process is not None and self.process.stderr is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                return (await self.process.stderr.read()).decode()
        return ""

    def text(self) -> str:
        return "".join(self.output)

    async def cleanup(self) -> None:
        """Leave nothing running when a test fails half-way."""
        if self.process is None or self.process.returncode is not None:
            return  # `duly up` ended on its own, and stopped its dev server first
        self.process.kill()
        await self.process.wait()
        if self.server_pid is not None and is_dev_server(self.server_pid):
            os.kill(self.server_pid, signal.SIGKILL)


def is_dev_server(pid: int) -> bool:
    try:
        return b"start-dev" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_up_runs_an_instance_stops_cleanly_on_ctrl_c_and_resumes_it(tmp_path, definitions):
    data_dir = tmp_path / "data"
    grpc_port, ui_port = free_port(), free_port()

    first = Up(data_dir, grpc_port, ui_port)
    await first.start()
    try:
        await first.wait_ready()
        banner = first.text()
        assert f"Temporal gRPC:   127.0.0.1:{grpc_port}" in banner
        assert f"http://127.0.0.1:{ui_port}" in banner
        assert "duly start quote-follow-up --data" in banner
        web = f"http://127.0.0.1:{first.web_port}"
        assert "Web app:" in banner and web in banner
        async with httpx.AsyncClient(base_url=web) as http:
            assert (await http.get("/api/tasks")).status_code == 401  # the API, asking for a token
            assert (await http.get("/docs")).status_code == 200

        client = await connect(first.address)
        described = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace="default")
        )
        assert described.namespace_info.name == "default"

        instance = await duly_client.start_instance(client, definitions, "quote-follow-up", QUOTE)
        assert instance.startswith("quote-follow-up/Q-7/")
        with pytest.raises(duly_client.AlreadyRunning, match="'Q-7'"):
            await duly_client.start_instance(client, definitions, "quote-follow-up", QUOTE)
        before = await _open_task(client, instance)
        assert before.task is not None and before.task.due_at is not None
        with pytest.raises(duly_client.TaskRejected, match="'nope' is not an outcome"):
            await duly_client.complete_task(client, before.task.task_id, "nope")

        assert await first.interrupt() == 0, first.text()
        assert first.server_pid is not None
        assert not process_alive(first.server_pid)
        assert (data_dir / "temporal.db").is_file()
    finally:
        await first.cleanup()

    second = Up(data_dir, grpc_port, ui_port)
    await second.start()
    try:
        await second.wait_ready()
        client = await connect(second.address)
        after = await duly_client.instance_state(client, instance)
        assert after.status == "running"
        assert after.task == before.task  # same task, same assignee, same due time
        assert after.next_rung == before.next_rung  # the SLA ladder's timer survived

        assert after.task is not None
        await duly_client.complete_task(client, after.task.task_id, "reached")
        async with asyncio.timeout(60):
            while (await duly_client.instance_state(client, instance)).status == "running":
                await asyncio.sleep(0.1)
        assert (await duly_client.instance_state(client, instance)).result == "won"
        # the quote summary went to the stack's outbox, as a file a newcomer can open (beside
        # the rep's task notification, sent by the worker's deliverer)
        kept = [mail.read_text() for mail in (data_dir / "outbox").glob("*.eml")]
        (summary,) = [mail for mail in kept if "X-Duly-Notification" not in mail]
        assert "To: ann@example.com" in summary
        assert any("X-Duly-Notification: task.assigned" in mail for mail in kept)

        assert await second.interrupt() == 0, second.text()
    finally:
        await second.cleanup()


async def _open_task(client, instance: str):
    async with asyncio.timeout(60):
        while (state := await duly_client.instance_state(client, instance)).task is None:
            await asyncio.sleep(0.1)
    return state


async def test_up_with_invalid_definitions_lists_the_problems_and_starts_nothing(tmp_path):
    up = Up(tmp_path / "data", free_port(), free_port())
    await up.start("--definitions", str(tmp_path / "missing"))
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT):
            out, err = await up.process.communicate()
        assert up.process.returncode == 1
        assert "no definitions folder here" in err.decode()
        assert "Traceback" not in err.decode()
        assert not (tmp_path / "data" / "temporal.db").exists()
    finally:
        await up.cleanup()


async def test_up_refuses_a_temporal_port_already_in_use(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = Up(tmp_path / "data", port, free_port())
        await up.start()
        try:
            async with asyncio.timeout(STARTUP_TIMEOUT):
                _, err = await up.process.communicate()
            assert up.process.returncode == 1
            assert f"port {port} (Temporal gRPC) on 127.0.0.1 is in use" in err.decode()
        finally:
            await up.cleanup()


# --- the stack's worker and duly.client, in-process on the shared dev server -------------------


@pytest.fixture
async def worker_client(dev_server_env, task_queue, tmp_path, definitions):
    """A client, with a worker built by `build_worker` on a fresh SQLite database."""
    from worker import ACTIVITY_THREADS, build_worker, prepare_database

    settings = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'duly.db'}", task_queue=task_queue
    )
    prepare_database(settings, definitions).dispose()
    with ThreadPoolExecutor(max_workers=ACTIVITY_THREADS) as executor:
        async with build_worker(dev_server_env.client, settings, activity_executor=executor):
            yield dev_server_env.client


async def test_events_start_an_instance_route_to_it_and_skip_other_keys(
    worker_client, definitions, task_queue
):
    client = worker_client
    sent = EventInput(id=f"sent-{task_queue}", type="quote.sent", data=_quote(task_queue))
    [instance] = await duly_client.send_event(client, definitions, sent, task_queue=task_queue)
    assert instance.startswith(f"quote-follow-up/{task_queue}/")

    # the trigger again, for the live key: delivered to it (a data update), not a second start
    resent = EventInput(
        id=f"resent-{task_queue}", type="quote.sent", data=_quote(task_queue, amount=900)
    )
    assert await duly_client.send_event(client, definitions, resent, task_queue=task_queue) == [
        instance
    ]
    other_key = EventInput(id="x", type="quote.accepted", data={"quote": {"id": "no-such-key"}})
    assert await duly_client.send_event(client, definitions, other_key) == []
    no_key = EventInput(id="y", type="quote.accepted", data={"lead": {"id": "L-1"}})
    assert await duly_client.send_event(client, definitions, no_key) == []
    with pytest.raises(duly_client.MissingKey, match=r"\{\{ quote.id \}\}"):
        await duly_client.send_event(client, definitions, EventInput(id="z", type="quote.sent"))

    state = await _open_task(client, instance)
    assert state.data["quote"]["amount"] == 900
    assert state.task is not None
    with pytest.raises(duly_client.TaskRejected, match="is not open"):
        await duly_client.complete_task(client, state.task.task_id + "0", "reached")
    done = await duly_client.complete_task(client, state.task.task_id, "lost", note="no budget")
    assert done.next_step == "lost"
    with pytest.raises(duly_client.TaskRejected):
        await duly_client.complete_task(client, state.task.task_id, "lost")


async def test_start_explains_an_unknown_process_a_missing_key_and_no_such_instance(
    worker_client, definitions
):
    with pytest.raises(duly_client.UnknownProcess, match="quote-follow-up"):
        await duly_client.start_instance(worker_client, definitions, "no-such-process", {})
    with pytest.raises(duly_client.MissingKey, match="lacks the field"):
        await duly_client.start_instance(worker_client, definitions, "quote-follow-up", {})
    with pytest.raises(duly_client.InstanceNotFound):
        await duly_client.instance_state(worker_client, "quote-follow-up/never-started")


async def test_a_key_starts_again_once_its_instance_ended(worker_client, definitions, task_queue):
    client = worker_client
    data = _quote(task_queue)
    first = await duly_client.start_instance(
        client, definitions, "quote-follow-up", data, task_queue=task_queue
    )
    accepted = EventInput(id=f"won-{task_queue}", type="quote.accepted", data=data)
    assert await duly_client.send_event(client, definitions, accepted) == [first]
    await client.get_workflow_handle(f"quote-follow-up/{task_queue}").result()

    again = await duly_client.start_instance(
        client, definitions, "quote-follow-up", data, task_queue=task_queue
    )
    assert (await duly_client.instance_state(client, first)).result == "won"
    latest = await duly_client.instance_state(client, f"quote-follow-up/{task_queue}")
    assert latest.instance_id == again
    assert again != first


def _quote(key: str, amount: int = 100) -> dict:
    return {
        "quote": {"id": key, "number": "7", "amount": amount},
        "contact": {"name": "Ann Lee", "email": "ann@example.com"},
        "owner": "sam",
    }
