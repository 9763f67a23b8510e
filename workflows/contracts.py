"""The activities each workflow calls: their names, input and result types, and call options.

One contract per workflow (`ProcessContract`, `MonitorContract`, `SummaryContract`), each entry
an `Activity[In, Out]`. Workflows call through it, typed end to end:

    opened = await ProcessContract.open_task.run(OpenTaskInput(...))  # an OpenTaskResult

Activities take their names from it (`@activity.defn(name=ProcessContract.open_task.name)`),
and the worker registers them with `implementations`, which checks that every entry has
exactly one implementation, of the contract's types. The names are the activity types in
every recorded history: changing one breaks the instances running.

This module imports only message models, so workflows import it through their sandbox
without the store.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Generic, TypeVar

from pydantic import BaseModel
from temporalio import activity, workflow
from temporalio.common import RetryPolicy

from activities.messages import (
    CloseTaskInput,
    EscalateInput,
    EscalateResult,
    FailureAlertInput,
    FinishInstanceInput,
    OpenTaskInput,
    OpenTaskResult,
    RecordSlaEventsInput,
    RecordStepInput,
    RunActionInput,
    RunActionResult,
    SettlePriorityInput,
    StartInstanceInput,
    StepWrites,
)
from duly.monitors.messages import MeasureInput, MeasureResult, RecordCheckInput, RecordCheckResult
from workflows import priority
from workflows.summary_messages import WeeklySummaryInput, WeeklySummaryResult

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel | None)

NOTHING = type(None)
"""The result type of an activity that returns nothing."""


@dataclass(frozen=True)
class Activity(Generic[In, Out]):
    """One activity a workflow calls: its name, what it takes and returns, how it is called.

    Attributes:
        name: The activity type, as recorded in histories.
        input: The one model it takes.
        result: The model it returns, or `NOTHING`.
        options: Timeouts and retries every call uses.
    """

    name: str
    input: type[In]
    result: type[Out]
    options: workflow.ActivityConfig

    async def run(self, input: In) -> Out:
        """Run the activity from workflow code and wait for its result.

        Raises:
            ActivityError: It failed after its retries (its `cause` says why).
        """
        result_type = None if self.result is NOTHING else self.result
        result: Out = await workflow.execute_activity(
            self.name, input, result_type=result_type, **self.options
        )
        return result


class Contract:
    """The activities one workflow calls, as `Activity` class attributes."""

    @classmethod
    def activities(cls) -> list[Activity[Any, Any]]:
        """Every entry of the contract, in the order declared."""
        return [value for value in vars(cls).values() if isinstance(value, Activity)]


# Writes to the database: retry until it answers (a DB outage must not lose a row). Writes take
# milliseconds; a short timeout means one lost with a crashed worker is soon retried.
STORE: workflow.ActivityConfig = {
    "start_to_close_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=30),
        non_retryable_error_types=["AssignmentError"],
    ),
}
# SLA work: written like any row, but taken from the queue before anything else waiting there
SLA_STORE: workflow.ActivityConfig = {**STORE, "priority": priority.SLA}
# A call to Temporal itself: retried until it answers
TEMPORAL_CALL: workflow.ActivityConfig = {
    "start_to_close_timeout": timedelta(seconds=10),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
    ),
}
# Actions reach other systems: a few tries, then the step's `on_error` (or a visible failure)
ACTION: workflow.ActivityConfig = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=2),
        maximum_interval=timedelta(seconds=30),
        maximum_attempts=3,
    ),
}
# A monitor's reads (over every open task) and writes: retry until the database answers
MONITOR_STORE: workflow.ActivityConfig = {
    "start_to_close_timeout": timedelta(seconds=30),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=30)
    ),
}
# Every manager's summary in one call; a week that is not one is not retried
SUMMARY_SEND: workflow.ActivityConfig = {
    "start_to_close_timeout": timedelta(minutes=2),
    "retry_policy": RetryPolicy(
        initial_interval=timedelta(seconds=1),
        maximum_interval=timedelta(seconds=30),
        non_retryable_error_types=["SummaryError"],
    ),
}


class ProcessContract(Contract):
    """What `ProcessWorkflow` calls (activities/process.py implements it)."""

    start_instance = Activity("start_instance", StartInstanceInput, NOTHING, STORE)
    finish_instance = Activity("finish_instance", FinishInstanceInput, NOTHING, STORE)
    open_task = Activity("open_task", OpenTaskInput, OpenTaskResult, STORE)
    # instances started before a step's writes rode along (STEP_WRITES_RIDE_ALONG) call these
    close_task = Activity("close_task", CloseTaskInput, NOTHING, STORE)
    record_step = Activity("record_step", RecordStepInput, NOTHING, STORE)
    record_sla_events = Activity("record_sla_events", RecordSlaEventsInput, NOTHING, STORE)
    # ...and new ones this, or hand the same writes to open_task or finish_instance
    record_writes = Activity("record_writes", StepWrites, NOTHING, STORE)
    escalate = Activity("escalate", EscalateInput, EscalateResult, SLA_STORE)
    failure_alert = Activity("failure_alert", FailureAlertInput, NOTHING, SLA_STORE)
    run_action = Activity("run_action", RunActionInput, RunActionResult, ACTION)
    settle_priority = Activity("settle_priority", SettlePriorityInput, NOTHING, TEMPORAL_CALL)


class MonitorContract(Contract):
    """What `MonitorWorkflow` calls (activities/monitors.py implements it)."""

    measure = Activity("monitor_measure", MeasureInput, MeasureResult, MONITOR_STORE)
    record = Activity("monitor_record", RecordCheckInput, RecordCheckResult, MONITOR_STORE)


class SummaryContract(Contract):
    """What `WeeklySummaryWorkflow` calls (activities/summary.py implements it)."""

    send_weekly_summaries = Activity(
        "send_weekly_summaries", WeeklySummaryInput, WeeklySummaryResult, SUMMARY_SEND
    )


CONTRACTS: Sequence[type[Contract]] = (ProcessContract, MonitorContract, SummaryContract)
"""Every workflow's contract: what duly's worker registers."""


class ContractError(Exception):
    """The activities given do not implement the contracts: one missing, doubled or unknown."""


def implementations(
    contracts: Iterable[type[Contract]], holders: Iterable[object]
) -> list[Callable[..., Any]]:
    """The bound activity methods of `holders` that implement `contracts`, for `Worker`.

    Args:
        contracts: The contracts to implement.
        holders: Instances of the classes whose `@activity.defn` methods implement them.

    Returns:
        One bound method per contract entry, in the contracts' order.

    Raises:
        ContractError: An entry has no implementation or more than one, an implementation
            takes or returns other types than its entry says, or a holder has an activity
            that no contract names (the worker would never be asked to run it).
    """
    entries = {entry.name: entry for contract in contracts for entry in contract.activities()}
    found: dict[str, list[Callable[..., Any]]] = {name: [] for name in entries}
    problems: list[str] = []
    for holder in holders:
        for method in _activity_methods(holder):
            name = _activity_name(method)
            where = f"{type(holder).__name__}.{method.__name__}"
            if name not in entries:
                problems.append(f"{where} implements activity '{name}', which no contract names")
                continue
            found[name].append(method)
            problems.extend(_type_problems(entries[name], method, where))
    for name, methods in found.items():
        if not methods:
            problems.append(f"activity '{name}' has no implementation")
        elif len(methods) > 1:
            doubled = ", ".join(method.__qualname__ for method in methods)
            problems.append(f"activity '{name}' is implemented more than once: {doubled}")
    if problems:
        raise ContractError("; ".join(problems))
    return [methods[0] for methods in found.values()]


def _activity_methods(holder: object) -> list[Callable[..., Any]]:
    """The holder's methods decorated with `@activity.defn`, bound to it."""
    methods = []
    for attr in dir(type(holder)):
        # static lookup: a property (say, definitions loaded on first use) is never evaluated
        value = inspect.getattr_static(holder, attr)
        if inspect.isfunction(value) and _activity_name(value) is not None:
            methods.append(getattr(holder, attr))
    return methods


def _activity_name(fn: Callable[..., Any]) -> str | None:
    """The activity type `@activity.defn` gave `fn`, or None when it is not an activity."""
    # the SDK keeps the definition on the function; its worker reads it the same way
    definition = activity._Definition.from_callable(fn)
    return definition.name if definition is not None else None


def _type_problems(entry: Activity[Any, Any], method: Callable[..., Any], where: str) -> list[str]:
    hints = typing.get_type_hints(method)
    params = list(inspect.signature(method).parameters)
    taken = [hints.get(param) for param in params]
    problems = []
    if taken != [entry.input]:
        problems.append(f"{where} must take one {entry.input.__name__}, as its contract says")
    if hints.get("return") is not entry.result:
        problems.append(f"{where} must return {_type_name(entry.result)}, as its contract says")
    return problems


def _type_name(result: type) -> str:
    return "None" if result is NOTHING else result.__name__
