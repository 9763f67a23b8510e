"""The workflow sandbox duly's worker runs its workflows in."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    DataConverter,
    SerializationContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
    WorkflowSerializationContext,
)
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.workflow import Info

# The pure, deterministic modules workflows use, shared with the worker rather than imported
# again for every instance. Only these: a module passed through runs unrestricted, so the
# sandbox would no longer refuse its file, environment or clock reads (duly.language.loader
# reads definitions/ and DULY_* variables, and is not here); tests/test_sandbox.py checks the
# source of duly's own instead.
PASSTHROUGH = (
    "workflows.interpreter",  # ProcessWorkflow's body: one copy for every instance
    "workflows.clock",  # SLA clock arithmetic
    "workflows.messages",  # ProcessWorkflow's input, state and updates
    "workflows.contracts",  # the activities each workflow calls, typed
    "workflows.priority",  # SLA work first, bulk work last
    "workflows.summary_messages",  # WeeklySummaryWorkflow's input and activity
    "activities.messages",  # what ProcessWorkflow sends its activities
    "duly.monitors.messages",  # MonitorWorkflow's input and activities
    "duly.language.actions",  # the action registry: how an action's `with:` renders
    "duly.language.business_time",  # deadlines (zoneinfo works normally only outside)
    "duly.language.compiler",  # CompiledProcess, the definition an instance runs
    "duly.language.durations",
    "duly.language.expressions",  # templates and conditions on the instance data
    "duly.language.model",  # the definition's steps, clocks and ladders
    # Jinja2 imports its runtime while it renders, and its template cache takes a threading
    # lock the sandbox forbids
    "jinja2",
    "markupsafe",
)


def workflow_runner(converter: DataConverter = pydantic_data_converter) -> SandboxedWorkflowRunner:
    """A sandboxed runner that passes duly's pure, deterministic modules through.

    Args:
        converter: The data converter of the worker's client. When it encodes every payload
            the same whatever the context (duly's does), the instances answer the SDK's
            serialization-context questions outside the sandbox (`ContextFreeSandboxedRunner`).
    """
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    if takes_no_context(converter):
        return ContextFreeSandboxedRunner(restrictions=restrictions)
    return SandboxedWorkflowRunner(restrictions=restrictions)


def takes_no_context(converter: DataConverter) -> bool:
    """Whether `converter` encodes alike in every serialization context.

    No part of it (payload converter, codec, failure converter, external storage) changes with
    one, and it stores nothing outside the history.
    """
    any_context = WorkflowSerializationContext(namespace="", workflow_id="")
    return converter.external_storage is None and converter.with_context(any_context) is converter


class ContextFreeSandboxedRunner(SandboxedWorkflowRunner):
    """The sandbox, for a worker whose data converter takes no serialization context.

    When the SDK encodes a workflow task's commands, it asks the instance, for each payload,
    which serialization context to encode it with (and which external-store context), and a
    sandboxed instance answers by compiling and running a line of code inside its sandbox. In
    a storm of breaches py-spy found 7-14% of the worker's time there (bench/README.md). With a
    converter that encodes alike in every context the answer changes nothing, so these
    instances give it without entering the sandbox; their workflow code runs sandboxed as ever.
    """

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        """A sandboxed instance, whose context questions are answered outside its sandbox."""
        return _ContextFreeInstance(super().create_instance(det))


class _ContextFreeInstance(WorkflowInstance):
    """A sandboxed instance that answers the serialization-context questions from outside."""

    def __init__(self, sandboxed: WorkflowInstance) -> None:
        self.sandboxed = sandboxed

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        return self.sandboxed.activate(act)

    def get_serialization_context(self, command_info: object) -> SerializationContext | None:
        return None  # the converter's own, context-free encoding

    def get_external_store_context(self, command_info: object) -> StorageDriverStoreContext:
        info = self.sandboxed.get_info()  # read outside the sandbox
        workflow = StorageDriverWorkflowInfo(
            id=info.workflow_id,
            run_id=info.run_id,
            type=info.workflow_type,
            namespace=info.namespace,
        )
        return StorageDriverStoreContext(target=workflow)  # unused: no external storage

    def get_info(self) -> Info:
        return self.sandboxed.get_info()

    def get_thread_id(self) -> int | None:
        return self.sandboxed.get_thread_id()


@functools.cache
def build_id() -> str:
    """The worker's build id: a hash of the source of the code that workflows run.

    The SDK's default hashes the bytecode of every module loaded, which takes seconds at each
    worker's start (every `duly simulate` run starts one). What decides how a history replays
    is the workflow code: `workflows/` and the modules passed through to it.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).parent.glob("*.py")):
        digest.update(path.read_bytes())
    for name in sorted(PASSTHROUGH):
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin and spec.origin.endswith(".py"):
            digest.update(Path(spec.origin).read_bytes())
    return f"duly-{digest.hexdigest()[:16]}"
