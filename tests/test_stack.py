"""`duly up` as a user runs it: a subprocess with its own data dir and free ports."""

import asyncio
import contextlib
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from support import free_port
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

from duly import client as duly_client
from duly.settings import Settings
from duly.stack import PORT_RACE_RESTARTS, READY_LINE, DevServer, StackError, port_is_free
from duly.temporal_binaries import dev_server_path
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
        # beside the UI's address: the demo's history is not in it
        ui_line = next(line for line in banner.splitlines() if "Temporal Web UI:" in line)
        assert "`duly demo`'s history is not there" in ui_line
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


# Stands in for the dev server binary: its first `clashes` runs end as the real one does when a
# port it picked for an internal service was taken before it bound it; later runs are the real one
CLASHING_SERVER = """#!{python}
import os, pathlib, sys
runs = pathlib.Path({runs!r})
done = len(runs.read_text()) if runs.exists() else 0
runs.write_text("x" * (done + 1))
if done < {clashes}:
    print('level=ERROR msg="Failed to start gRPC listener" error="listen tcp 127.0.0.1:36177: '
          'bind: address already in use" service=matching', flush=True)
    sys.exit(2)
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
"""


def clashing_server(tmp_path: Path, clashes: int) -> tuple[DevServer, Path]:
    """A dev server whose first `clashes` starts lose a port race, and the file counting starts."""
    binary, runs = tmp_path / "clashing-temporal", tmp_path / "runs"
    real = str(dev_server_path())
    text = CLASHING_SERVER.format(python=sys.executable, runs=str(runs), clashes=clashes, real=real)
    binary.write_text(text)
    binary.chmod(0o755)
    server = DevServer(
        port=free_port(),
        ui_port=free_port(),
        db_file=tmp_path / "temporal.db",
        log_file=tmp_path / "temporal.log",
        binary=binary,
    )
    return server, runs


async def test_a_dev_server_that_lost_a_port_race_is_started_again(tmp_path):
    server, runs = clashing_server(tmp_path, clashes=1)
    await server.start()
    try:
        client = await server.wait_until_ready("default")
        response = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace="default")
        )
        assert response.namespace_info.name == "default"
        assert len(runs.read_text()) == 2
    finally:
        await server.stop()


async def test_a_dev_server_that_keeps_losing_port_races_is_a_clear_error(tmp_path):
    server, runs = clashing_server(tmp_path, clashes=PORT_RACE_RESTARTS + 1)
    await server.start()
    with pytest.raises(StackError, match="exited with code 2 while starting(.|\\n)*already in use"):
        await server.wait_until_ready("default")
    assert len(runs.read_text()) == PORT_RACE_RESTARTS + 1


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
    from duly.worker import ACTIVITY_THREADS, build_worker, prepare_database

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
    # told by the instance itself, which may know before the store does
    with pytest.raises(duly_client.TaskRejected, match=r"is completed \(lost\), no longer open"):
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


# --- the dev server never outlives duly -----------------------------------------------------------

LEFTOVER = (
    "import json, subprocess, sys\n"
    "out = open(sys.argv[2], 'a')\n"
    "server = subprocess.Popen(json.loads(sys.argv[1]), stdin=subprocess.DEVNULL, stdout=out,\n"
    "                          stderr=subprocess.STDOUT, start_new_session=True)\n"
    "print(server.pid)\n"
)
"""Starts a dev server and exits at once: the server is left behind, as a crashed duly leaves it."""


def wait_for(
    condition, what: str, timeout: float = STOP_TIMEOUT + STARTUP_TIMEOUT, detail=None
) -> None:
    """Poll `condition` until it holds; fail with `what` (and `detail()`) after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not true after {timeout} s: {what}\n{detail() if detail else ''}")
        time.sleep(0.05)


class PipedUp:
    """`duly up` with stdout a pipe this test reads, then closes, as `| tee` does."""

    def __init__(self, data_dir: Path, grpc_port: int, ui_port: int, stderr: Path) -> None:
        self.settings = Up(data_dir, grpc_port, ui_port)
        self.ports = (grpc_port, ui_port)
        reader, writer = os.pipe()
        self.reader: int | None = reader
        self.stderr = stderr.open("wb")
        self.process = subprocess.Popen(
            [*DULY, "up"],
            cwd=ROOT,
            env=self.settings.env,
            stdin=subprocess.DEVNULL,
            stdout=writer,
            stderr=self.stderr,
        )
        os.close(writer)
        self.server_pid: int | None = None
        self.text = ""

    def wait_ready(self) -> None:
        assert self.reader is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while READY_LINE not in self.text:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self.reader], [], [], max(left, 0))
            chunk = os.read(self.reader, 65536) if ready else b""
            if not chunk:
                pytest.fail(f"duly up not ready (or ended):\n{self.text}\n{self.errors()}")
            self.text += chunk.decode()
        found = re.search(r"dev server pid (\d+)", self.text)
        assert found, self.text
        self.server_pid = int(found.group(1))

    def close_reader(self) -> None:
        assert self.reader is not None
        os.close(self.reader)
        self.reader = None

    def errors(self) -> str:
        self.stderr.flush()
        return Path(self.stderr.name).read_text(errors="replace")

    def server_gone_and_ports_free(self) -> bool:
        assert self.server_pid is not None
        return not is_dev_server(self.server_pid) and all(port_is_free(p) for p in self.ports)

    def cleanup(self) -> None:
        if self.reader is not None:
            os.close(self.reader)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.server_pid is not None and is_dev_server(self.server_pid):
            os.kill(self.server_pid, signal.SIGKILL)
        self.stderr.close()


def test_when_its_stdout_pipe_closes_duly_stops_and_its_dev_server_with_it(tmp_path):
    up = PipedUp(tmp_path / "data", free_port(), free_port(), tmp_path / "stderr")
    try:
        up.wait_ready()
        up.close_reader()  # `duly up | tee log`, and tee is gone (Ctrl-C ends both)
        wait_for(
            lambda: up.process.poll() is not None,
            "duly up stopped once its stdout closed",
            detail=up.errors,
        )
        assert up.process.returncode == 0, up.errors()
        assert "Traceback" not in up.errors()
        wait_for(up.server_gone_and_ports_free, "the dev server gone, ports free", detail=up.errors)
    finally:
        up.cleanup()


def test_ctrl_c_after_the_pipe_closed_still_stops_the_dev_server(tmp_path):
    up = PipedUp(tmp_path / "data", free_port(), free_port(), tmp_path / "stderr")
    try:
        up.wait_ready()
        up.close_reader()
        with contextlib.suppress(ProcessLookupError):
            up.process.send_signal(signal.SIGINT)  # the terminal's Ctrl-C reaches duly too
        wait_for(
            lambda: up.process.poll() is not None, "duly up ended after Ctrl-C", detail=up.errors
        )
        wait_for(up.server_gone_and_ports_free, "the dev server gone, ports free", detail=up.errors)
    finally:
        up.cleanup()


def test_a_killed_duly_takes_its_dev_server_along(tmp_path):
    up = PipedUp(tmp_path / "data", free_port(), free_port(), tmp_path / "stderr")
    try:
        up.wait_ready()
        up.process.kill()  # no chance to stop anything itself
        up.process.wait()
        wait_for(up.server_gone_and_ports_free, "the dev server gone after duly was killed")
    finally:
        up.cleanup()


def test_a_dev_server_left_running_on_the_data_folder_is_replaced(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    grpc_port, ui_port = free_port(), free_port()
    leftover = DevServer(
        port=grpc_port,
        ui_port=ui_port,
        db_file=data_dir / "temporal.db",
        log_file=data_dir / "temporal.log",
    )
    spawned = subprocess.run(
        [sys.executable, "-c", LEFTOVER, json.dumps(leftover.command()), str(leftover.log_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=STARTUP_TIMEOUT,
    )
    old_pid = int(spawned.stdout)
    up: PipedUp | None = None
    try:
        wait_for(lambda: not port_is_free(grpc_port), "the leftover server listening")
        assert os.getppid() != old_pid and is_dev_server(old_pid)
        up = PipedUp(data_dir, grpc_port, ui_port, tmp_path / "stderr")
        up.wait_ready()
        assert up.server_pid != old_pid
        assert not process_alive(old_pid) or not is_dev_server(old_pid)
        assert "left running" in up.errors()
        up.process.send_signal(signal.SIGINT)
        wait_for(lambda: up.process.poll() is not None, "duly up stopped on Ctrl-C")
        assert up.process.returncode == 0, up.errors()
        wait_for(up.server_gone_and_ports_free, "the new dev server gone, ports free")
    finally:
        if up is not None:
            up.cleanup()
        if is_dev_server(old_pid):
            os.kill(old_pid, signal.SIGKILL)


def test_a_running_duly_up_on_the_same_data_folder_is_not_replaced(tmp_path):
    data_dir = tmp_path / "data"
    first = PipedUp(data_dir, free_port(), free_port(), tmp_path / "stderr-1")
    try:
        first.wait_ready()
        second = Up(data_dir, free_port(), free_port())
        done = subprocess.run(
            [*DULY, "up"],
            cwd=ROOT,
            env=second.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT,
        )
        assert done.returncode == 1
        assert f"another `duly up` (pid {first.process.pid}) is running" in done.stderr
        assert first.server_pid is not None and is_dev_server(first.server_pid)
    finally:
        first.cleanup()
