"""The workflow sandbox duly's worker runs its workflows in."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

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


def workflow_runner() -> SandboxedWorkflowRunner:
    """A sandboxed runner that passes duly's pure, deterministic modules through."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )


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
