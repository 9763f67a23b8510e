"""ProcessWorkflow: one generic workflow that interprets any compiled process definition.

The class the workflow sandbox runs holds only Temporal's handlers; each hands its call to the
interpreter (`workflows.interpreter`), which the sandbox passes through, so every instance shares
one copy of it instead of executing it again.
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from workflows.interpreter import PROMPT_SLA_AUDIT, Interpreter
    from workflows.messages import (
        WORKFLOW_NAME,
        CompleteTaskInput,
        CompleteTaskResult,
        EventInput,
        InstanceState,
        ProcessInput,
        ProcessResult,
        ReassignTaskInput,
        ReassignTaskResult,
    )

__all__ = ["PROMPT_SLA_AUDIT", "ProcessWorkflow"]


@workflow.defn(name=WORKFLOW_NAME)
class ProcessWorkflow(Interpreter):
    """Runs one instance of a process: its steps, its SLA clocks and their ladders."""

    @workflow.init
    def __init__(self, input: ProcessInput) -> None:
        super().__init__(input)

    @workflow.run
    async def run(self, input: ProcessInput) -> ProcessResult:
        """Walk the flowchart until an end step, the loop limit or a failure."""
        return await self.walk(input)

    @workflow.update
    async def complete_task(self, input: CompleteTaskInput) -> CompleteTaskResult:
        """Complete the open task with an outcome; validated first: a bad call changes nothing."""
        return await self.complete(input)

    @complete_task.validator
    def _check_completion(self, input: CompleteTaskInput) -> None:
        self.check_completion(input)

    @workflow.update
    async def reassign_task(self, input: ReassignTaskInput) -> ReassignTaskResult:
        """Hand the open task to another user; validated first: a bad call changes nothing."""
        return await self.reassign(input)

    @reassign_task.validator
    def _check_reassign(self, input: ReassignTaskInput) -> None:
        self.check_reassign(input)

    @workflow.signal
    def event(self, input: EventInput) -> None:
        """An inbound event for this instance's business key."""
        self.receive(input)

    @workflow.query(name="state")
    def current_state(self) -> InstanceState:
        """The live state: step, task, assignee, due time, next rung of the ladder."""
        return self.state
