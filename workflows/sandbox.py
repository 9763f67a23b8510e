"""The workflow sandbox duly's worker runs ProcessWorkflow in."""

from __future__ import annotations

from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

# Deterministic libraries the interpreter calls while running a step: the language (business
# time, templates) and Jinja2, whose template cache takes a threading lock the sandbox forbids.
PASSTHROUGH = ("duly.language", "activities.messages", "jinja2", "markupsafe")


def workflow_runner() -> SandboxedWorkflowRunner:
    """A sandboxed runner that passes duly's pure, deterministic modules through."""
    return SandboxedWorkflowRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_modules(*PASSTHROUGH)
    )
