"""The sandbox duly runs workflows in refuses non-deterministic calls.

Workflow code that reads the wall clock or opens a file fails its workflow task instead of
running. (Passing every module through the sandbox would save memory, but it silently drops
these checks, which is why `workflows.sandbox` does not: the first test failed with it.) Only the
pure modules workflows use are passed through: the definition loader, which reads files and the
environment, is not, so a workflow that called it would fail the same way. The sandbox does not
check what it passes through (the interpreter among them, so every instance shares one copy) at
run time, so the last tests check their source instead.
"""

from __future__ import annotations

import ast
import asyncio
import datetime
import uuid
from collections.abc import Sequence
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.converter import (
    DataConverter,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
)
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

import workflows.clock
import workflows.sandbox
from activities.messages import SlaEvent
from duly.language import business_time
from duly.language.loader import Definitions
from workflows import interpreter
from workflows.sandbox import (
    PASSTHROUGH,
    ContextFreeSandboxedRunner,
    build_id,
    takes_no_context,
    workflow_runner,
)


@workflow.defn(sandboxed=True)
class ReadsTheWallClock:
    @workflow.run
    async def run(self) -> str:
        return datetime.datetime.now().isoformat()


@workflow.defn(sandboxed=True)
class OpensAFile:
    @workflow.run
    async def run(self) -> str:
        return Path(__file__).read_text()[:10]


@workflow.defn(sandboxed=True)
class AsksTheLoaderWhereDefinitionsAre:
    @workflow.run
    async def run(self) -> str:
        from duly.language import loader

        return str(loader.default_root())  # DULY_DEFINITIONS, read from the environment


@workflow.defn(sandboxed=True)
class ImportsPureModules:
    @workflow.run
    async def run(self) -> list[int]:
        from duly.language import business_time as arithmetic
        from workflows import clock as sla_clock

        return [id(sla_clock), id(arithmetic)]


@workflow.defn(sandboxed=True)
class UsesWorkflowTime:
    @workflow.run
    async def run(self) -> str:
        return workflow.now().isoformat()


@activity.defn(name="sandbox-echo")
async def echo(event: SlaEvent) -> SlaEvent:
    return event


@workflow.defn(sandboxed=True)
class SendsAnActivityItsInput:
    @workflow.run
    async def run(self, event: SlaEvent) -> SlaEvent:
        result: SlaEvent = await workflow.execute_activity(
            echo, event, start_to_close_timeout=datetime.timedelta(seconds=30)
        )
        return result


class _Reversing(PayloadCodec, WithSerializationContext):
    """A codec that takes the serialization context (its bytes could depend on it)."""

    def with_context(self, context: SerializationContext) -> _Reversing:
        return _Reversing()

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [Payload(metadata=p.metadata, data=p.data[::-1]) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [Payload(metadata=p.metadata, data=p.data[::-1]) for p in payloads]


class CompressesAlike(PayloadCodec):
    """A codec whose bytes do not depend on the context."""

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


async def _task_failure(
    env: WorkflowEnvironment, workflow_class: type, task_queue: str
) -> tuple[str, str]:
    """Run `workflow_class` until its first workflow task fails; the failure's type and message."""
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[workflow_class],
        workflow_runner=workflow_runner(),
    ):
        handle = await env.client.start_workflow(
            workflow_class.run,  # type: ignore[attr-defined]
            id=f"sandbox-{uuid.uuid4()}",
            task_queue=task_queue,
        )
        for _ in range(100):
            async for event in handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    await handle.terminate("seen")
                    failure = event.workflow_task_failed_event_attributes.failure
                    return failure.application_failure_info.type, failure.message
            await asyncio.sleep(0.1)
        await handle.terminate("no failure")
        raise AssertionError(f"{workflow_class.__name__} ran without a workflow task failure")


@pytest.mark.parametrize(
    ("workflow_class", "refused"),
    [(ReadsTheWallClock, "datetime.datetime.now"), (OpensAFile, "pathlib.Path.read_text")],
)
async def test_non_deterministic_calls_fail_the_workflow_task(
    dev_server_env: WorkflowEnvironment, task_queue: str, workflow_class: type, refused: str
) -> None:
    kind, message = await _task_failure(dev_server_env, workflow_class, task_queue)
    assert kind == "RestrictedWorkflowAccessError"
    assert refused in message


async def test_the_worker_runs_its_workflows_in_this_sandbox(
    dev_server_env: WorkflowEnvironment, task_queue: str, tmp_path: Path
) -> None:
    """`duly worker`'s workflows run here; only simulated runs pass another runner."""
    from duly.settings import Settings
    from duly.worker import build_worker

    worker = build_worker(dev_server_env.client, Settings(data_dir=tmp_path), task_queue=task_queue)
    runner = worker.config()["workflow_runner"]
    assert isinstance(runner, ContextFreeSandboxedRunner)  # a SandboxedWorkflowRunner
    assert runner.restrictions == workflow_runner().restrictions


def test_a_converter_with_a_codec_gets_the_sandbox_that_asks_it_for_contexts() -> None:
    with_codec = DataConverter(payload_codec=_Reversing())
    assert takes_no_context(DataConverter.default)
    assert takes_no_context(DataConverter(payload_codec=CompressesAlike()))
    assert not takes_no_context(with_codec)
    runner = workflow_runner(with_codec)
    assert type(runner) is SandboxedWorkflowRunner
    assert runner.restrictions == workflow_runner().restrictions


async def test_answering_contexts_outside_the_sandbox_encodes_the_same_bytes(
    dev_server_env: WorkflowEnvironment, task_queue: str
) -> None:
    """An activity's input and the workflow's result, in the history, byte for byte."""
    event = SlaEvent(
        clock="step:call", kind="breach", at=datetime.datetime(2026, 12, 7, 9, tzinfo=datetime.UTC)
    )
    plain = SandboxedWorkflowRunner(restrictions=workflow_runner().restrictions)
    recorded: list[list[bytes]] = []
    runner: WorkflowRunner
    for runner in (workflow_runner(), plain):
        async with Worker(
            dev_server_env.client,
            task_queue=task_queue,
            workflows=[SendsAnActivityItsInput],
            activities=[echo],
            workflow_runner=runner,
        ):
            handle = await dev_server_env.client.start_workflow(
                SendsAnActivityItsInput.run,
                event,
                id=f"sandbox-{uuid.uuid4()}",
                task_queue=task_queue,
            )
            assert await handle.result() == event
        history = await handle.fetch_history()
        recorded.append(
            [
                payload.data
                for e in history.events
                if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
                for payload in e.activity_task_scheduled_event_attributes.input.payloads
            ]
            + [
                payload.data
                for e in history.events
                if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED
                for payload in e.workflow_execution_completed_event_attributes.result.payloads
            ]
        )
    assert len(recorded[0]) == 2
    assert recorded[0] == recorded[1]


async def test_workflow_time_runs(dev_server_env: WorkflowEnvironment, task_queue: str) -> None:
    async with Worker(
        dev_server_env.client,
        task_queue=task_queue,
        workflows=[UsesWorkflowTime],
        workflow_runner=workflow_runner(),
    ):
        result = await dev_server_env.client.execute_workflow(
            UsesWorkflowTime.run, id=f"sandbox-{uuid.uuid4()}", task_queue=task_queue
        )
    assert datetime.datetime.fromisoformat(result).tzinfo is not None


async def test_the_definition_loader_is_not_passed_through(
    dev_server_env: WorkflowEnvironment, task_queue: str
) -> None:
    # passed through, it would read the environment from inside a workflow, unchecked
    kind, _ = await _task_failure(dev_server_env, AsksTheLoaderWhereDefinitionsAre, task_queue)
    assert kind == "RestrictedWorkflowAccessError"


async def test_the_pure_modules_workflows_use_are_the_workers_own(
    dev_server_env: WorkflowEnvironment, task_queue: str
) -> None:
    async with Worker(
        dev_server_env.client,
        task_queue=task_queue,
        workflows=[ImportsPureModules],
        workflow_runner=workflow_runner(),
    ):
        ids = await dev_server_env.client.execute_workflow(
            ImportsPureModules.run,
            id=f"sandbox-{uuid.uuid4()}",
            task_queue=task_queue,
            execution_timeout=datetime.timedelta(minutes=1),
        )
    # passed through: not imported again for every instance
    assert ids == [id(workflows.clock), id(business_time)]


# What code the sandbox passes through must never do itself, since the sandbox no longer checks
# it at run time: read the clock, files, the environment or randomness, or reach the store.
NON_DETERMINISTIC_MODULES = {
    "os",
    "pathlib",
    "random",
    "secrets",
    "socket",
    "subprocess",
    "threading",
    "time",
    "sqlalchemy",
    "sqlmodel",
    "httpx",
    "duly.settings",
    "duly.store",
    "duly.language.loader",
}
NON_DETERMINISTIC_CALLS = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("uuid", "uuid1"),
    ("uuid", "uuid4"),
}
OWN_PASSTHROUGH = [m for m in PASSTHROUGH if m.split(".")[0] in {"workflows", "activities", "duly"}]


def _source(module: str) -> Path:
    # here, not at import: the sandbox imports this file too, and refuses Path.resolve
    return Path(__file__).resolve().parent.parent / (module.replace(".", "/") + ".py")


def _problems(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    problems = []
    for node in ast.walk(tree):
        imported: list[str] = []
        if isinstance(node, ast.Import):
            imported = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            imported = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        for name in imported:
            if any(name == bad or name.startswith(f"{bad}.") for bad in NON_DETERMINISTIC_MODULES):
                problems.append(f"{path.name}:{node.lineno} imports {name}")
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "open":
                problems.append(f"{path.name}:{node.lineno} calls open()")
            if (
                isinstance(func, ast.Attribute)
                and isinstance(func.value, ast.Name)
                and (func.value.id, func.attr) in NON_DETERMINISTIC_CALLS
            ):
                problems.append(f"{path.name}:{node.lineno} calls {func.value.id}.{func.attr}()")
    return problems


@pytest.mark.parametrize("module", OWN_PASSTHROUGH)
def test_what_the_sandbox_passes_through_reads_no_clock_file_environment_or_randomness(
    module: str,
) -> None:
    assert _problems(_source(module)) == []


def test_the_check_of_passed_through_code_finds_what_the_sandbox_would_refuse(
    tmp_path: Path,
) -> None:
    # the check itself: a module doing each of the things it looks for is caught
    assert "workflows.interpreter" in OWN_PASSTHROUGH
    bad = tmp_path / "probe.py"
    bad.write_text(
        "import random\nfrom datetime import datetime\nfrom duly.store.db import make_engine\n"
        "x = datetime.now()\ny = open('f')\n",
        encoding="utf-8",
    )
    found = _problems(bad)
    assert [problem.split(" ", 1)[1] for problem in found] == [
        "imports random",
        "imports duly.store.db",
        "imports duly.store.db.make_engine",
        "calls datetime.now()",
        "calls open()",
    ]


def test_instances_of_one_definition_share_one_copy(definitions: Definitions) -> None:
    # the interpreter passes its input's copy for the worker's one (about 40 kB an instance);
    # a text of its own keeps this copy apart from the instances other tests ran in this process
    quote = definitions.processes["quote-follow-up"]
    first = quote.model_copy(update={"source": quote.source + "\n# test_sandbox\n"})
    assert interpreter.shared(first) is first
    assert interpreter.shared(first.model_copy(deep=True)) is first
    # another revision (its content, or only the file's text) is a definition of its own
    changed = first.model_copy(update={"source": first.source + "# a comment\n"})
    assert interpreter.shared(changed) is changed
    other = definitions.processes["lead-follow-up"]
    assert interpreter.shared(other) is not first
    assert interpreter.shared(first.model_copy(deep=True)) is first
    # a copy standing in for other days keeps the hash, and runs on its own calendar
    ahead = first.standing_in(
        days_of=datetime.date(2026, 11, 9), on=datetime.date(2027, 11, 8), days=7
    )
    assert ahead.hash == first.hash
    assert interpreter.shared(ahead) is ahead
    assert interpreter.shared(ahead.model_copy(deep=True)) is ahead
    assert interpreter.shared(first.model_copy(deep=True)) is first


def test_the_build_id_hashes_the_workflow_code_and_what_it_passes_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    compute = build_id.__wrapped__  # past the cache
    assert compute() == build_id()
    assert build_id().startswith("duly-")
    monkeypatch.setattr(workflows.sandbox, "PASSTHROUGH", ("workflows.interpreter",))
    assert compute() != build_id()  # the passed-through modules count, not only workflows/
