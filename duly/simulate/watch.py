"""When the engine itself may next open a task or hand one over: how far a run may jump ahead.

`duly demo`'s driver looks for new tasks every 10 minutes of open time, a round trip to the test
server each time. A scenario run jumps instead from one moment something can happen to the
next: the driver's own next action (an arrival, a rep's completion, a CRM event), or the next
engine timer that may open a task (a wait step's wake) or hand one over (a rung that
reassigns). Those timers are read off the instances, with the interpreter's own arithmetic:
a task's rung from its open and due times and the step's ladder, a waiting instance's wake
from the completion that led into the wait (`completed`), else from its `state` query (asked
once per wait). Where neither tells (an SLA whose target the
data chooses, a process-level clock that reassigns, an instance between two steps), the run
looks every `STEP` of open time, as the demo does.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import bindparam
from sqlalchemy import select as sa_select
from temporalio.client import Client

from duly.client import STATE_QUERY
from duly.demo import STEP
from duly.language import business_time
from duly.language.compiler import CompiledProcess
from duly.language.durations import Duration
from duly.language.model import TaskStep, WaitStep
from duly.store.db import SessionFactory
from duly.store.models import Instance, Task
from workflows.messages import InstanceState

SETTLE = timedelta(minutes=1)
"""How long a run lets simulated time go on after a moment before it looks at the store: the
engine works through what happened at once, and meanwhile the test server's clock runs only
as fast as real time, so this is a margin of a real minute."""


_TASKS = Task.__table__.c  # type: ignore[attr-defined]
_INSTANCES = Instance.__table__.c  # type: ignore[attr-defined]
# read at every look: built once, and read as plain rows rather than ORM entities
_HELD = sa_select(
    _TASKS.instance_id, _TASKS.process, _TASKS.step, _TASKS.opened_at, _TASKS.due_at
).where(_TASKS.status == "open", _TASKS.step.in_(bindparam("steps", expanding=True)))
_HOLDING = sa_select(_TASKS.instance_id).where(_TASKS.status == "open")
_WAITING = sa_select(_INSTANCES.id, _INSTANCES.workflow_id).where(
    _INSTANCES.status == "running", _INSTANCES.id.not_in(_HOLDING.scalar_subquery())
)
_WRITTEN = sa_select(_INSTANCES.id).where(_INSTANCES.id.in_(bindparam("ids", expanding=True)))


class EngineWatch:
    """The next moment the engine itself may open or hand over a task, for one run."""

    def __init__(
        self, client: Client, processes: dict[str, CompiledProcess], sessions: SessionFactory
    ) -> None:
        """Watch the instances of `processes` in a run's store, through its test server's client."""
        self.client = client
        self.processes = processes
        self.sessions = sessions
        self.wakes: dict[str, datetime] = {}  # instance id -> the wake of the wait it is in
        self.touched: set[str] = set()  # instances acted on since the last look
        # Rungs that reassign, per (process, task step): their shares of the SLA, or None when
        # the data chooses the target (the task row keeps the first due time only)
        self.reassigning: dict[tuple[str, str], list[float] | None] = {}
        self.clock_reassigns = False
        for name, process in processes.items():
            for step_id, step in process.spec.steps.items():
                if not isinstance(step, TaskStep) or step.sla is None:
                    continue
                shares = [r.at for r in step.sla.escalate if _reassigns(r.actions)]
                if shares:
                    fixed = isinstance(step.sla.within, Duration)
                    self.reassigning[(name, step_id)] = shares if fixed else None
            if any(_reassigns(r.actions) for c in process.spec.clocks.values() for r in c.escalate):
                self.clock_reassigns = True
        # the open tasks worth reading at a look: those whose step has a rung that reassigns
        self.reassigning_steps = sorted({step for _, step in self.reassigning})

    def touch(self, instances: Iterable[str]) -> None:
        """Instances the driver acted on: what they wait for is asked again."""
        for instance in instances:
            self.touched.add(instance)
            self.wakes.pop(instance, None)

    def completed(self, instance: str, process: str, step: str, outcome: str, at: datetime) -> None:
        """A task of `instance` was completed at `at`: if that leads to a wait, note its wake.

        The wake is the interpreter's (`business_time.add` from the moment it enters the wait,
        which is the completion's within a fraction of `SETTLE`), so it need not be asked.
        """
        compiled = self.processes[process]
        completed = compiled.spec.steps[step]
        assert isinstance(completed, TaskStep)
        after = compiled.spec.steps.get(completed.outcomes.get(outcome, ""))
        if isinstance(after, WaitStep):
            duration = after.for_ or after.timeout
            assert duration is not None  # the model requires one of them
            self.wakes[instance] = business_time.add(compiled.calendar, at, duration)

    async def next_moment(self, now: datetime) -> datetime | None:
        """The earliest moment the engine may open or hand over a task, plus `SETTLE`.

        Args:
            now: The test server's time; the run has just looked at the store.

        Returns:
            That moment; a `STEP` of open time ahead when it is not known; None when no engine
            timer can open or move a task (only the driver's actions will).
        """
        watch = self._watch(now)
        if self.clock_reassigns:
            return watch
        with self.sessions() as session:
            connection = session.connection()
            held = connection.execute(_HELD, {"steps": self.reassigning_steps}).all()
            waiting: dict[str, str] = dict(connection.execute(_WAITING).all())
            written = (
                set(connection.execute(_WRITTEN, {"ids": list(self.touched)}).scalars())
                if self.touched
                else set()
            )
        if self.touched - written:
            return watch  # started, and not yet written by the engine
        moments: list[datetime] = []
        for _, process, step, opened, due in held:
            if (process, step) not in self.reassigning:
                continue
            shares = self.reassigning[(process, step)]
            if shares is None or due is None:
                return watch
            moments += [self._rung(process, step, opened, due, share) for share in shares]
        for instance, workflow in waiting.items():
            wake = self.wakes.get(instance)
            if wake is None or wake + SETTLE <= now:
                wake = await self._wake_of(workflow)
                if wake is None or wake + SETTLE <= now:
                    return watch  # between two steps, or a wait whose end is not written yet
                self.wakes[instance] = wake
            moments.append(wake)
        self.touched.clear()
        for gone in set(self.wakes) - set(waiting):
            del self.wakes[gone]
        # A moment whose SETTLE has passed was looked at after it (runs never jump past one)
        ahead = [moment + SETTLE for moment in moments if moment + SETTLE > now]
        return min(ahead, default=None)

    def _watch(self, now: datetime) -> datetime:
        """A STEP of open time ahead: the next look when the engine's next timer is not known."""
        opening = min(business_time.next_opening(p.calendar, now) for p in self.processes.values())
        return max(opening, now) + STEP

    def _rung(
        self, process: str, step: str, opened: datetime, due: datetime, share: float
    ) -> datetime:
        """When a step clock reaches `share` of its SLA, as `ProcessWorkflow._at_share` says."""
        if share == 1:
            return due
        compiled = self.processes[process]
        sla = compiled.spec.steps[step].sla  # type: ignore[union-attr]
        assert sla is not None and isinstance(sla.within, Duration)
        if sla.within.kind == "wall":
            return opened + (due - opened) * share
        total = business_time.elapsed(compiled.calendar, opened, due).total_seconds()
        return business_time.add_business_seconds(compiled.calendar, opened, share * total)

    async def _wake_of(self, workflow: str) -> datetime | None:
        """A running instance's wake, when it waits in a wait step; None otherwise."""
        handle = self.client.get_workflow_handle(workflow)
        state: InstanceState = await handle.query(STATE_QUERY, result_type=InstanceState)
        if state.status != "running" or state.task is not None:
            return None
        return state.wake_at


def _reassigns(actions: Iterable[object]) -> bool:
    return any(getattr(action, "reassign", None) is not None for action in actions)
