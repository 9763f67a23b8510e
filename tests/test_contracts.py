"""The workflows' activity contracts: one implementation per entry, and names said only there.

Activity names are the activity types in every recorded history, so they live in one place
(workflows/contracts.py): the workflows call through it, the activities take their names from
it, the worker registers from it, and no other code spells a name as a string.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError
from temporalio import activity

from activities.messages import (
    FinishInstanceInput,
    OpenTaskInput,
    OpenTaskResult,
    RunActionInput,
    StartInstanceInput,
    StepWrites,
)
from duly.settings import Settings
from duly.store.db import make_engine, session_factory
from duly.worker import activities
from workflows.contracts import (
    CONTRACTS,
    NOTHING,
    STORE,
    Activity,
    Contract,
    ContractError,
    implementations,
)

ROOT = Path(__file__).resolve().parent.parent
SCANNED = ("workflows", "activities", "duly", "bench", "scripts", "worker.py")
CONTRACT_MODULE = "workflows/contracts.py"
NAMES = {entry.name for contract in CONTRACTS for entry in contract.activities()}
# workflow functions that schedule an activity: only a contract calls them
SCHEDULERS = {
    f"{verb}_{kind}"
    for verb in ("execute", "start")
    for kind in (
        "activity",
        "activity_method",
        "activity_class",
        "local_activity",
        "local_activity_method",
        "local_activity_class",
    )
}
# string literals equal to an activity name that mean something else
NOT_ACTIVITY_NAMES = {
    ("duly/demo.py", "escalate"): "an outcome of support-case's investigate step",
    ("bench/simulate_backtest.py", "escalate"): "an outcome of support-case's investigate step",
    ("duly/published.py", "escalate"): "the `escalate:` ladder key of a definition's SLA",
    ("duly/language/compiler.py", "escalate"): "the `escalate:` ladder key, in an error path",
    ("duly/api/web/pages.py", "open_task"): "a template variable of the instance page",
}


# --- one implementation per entry ------------------------------------------------------------


def test_every_contract_entry_has_exactly_one_registered_implementation() -> None:
    registered = activities(session_factory(make_engine("sqlite://")), Settings())
    names = Counter(activity._Definition.must_from_callable(fn).name for fn in registered)
    assert set(names) == NAMES
    assert set(names.values()) == {1}


def test_no_activity_name_is_in_two_contracts() -> None:
    every = [entry.name for contract in CONTRACTS for entry in contract.activities()]
    assert len(every) == len(set(every)) == len(NAMES)


def test_every_activity_type_in_a_recorded_history_is_still_in_a_contract() -> None:
    recorded: set[str] = set()
    for path in ROOT.glob("tests/**/histories/*.json"):
        recorded |= set(_activity_types(json.loads(path.read_text(encoding="utf-8"))))
    assert {"open_task", "escalate", "monitor_measure"} <= recorded  # the histories are read
    assert recorded <= NAMES


def _activity_types(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("activityType"), dict):
            yield node["activityType"]["name"]
        for value in node.values():
            yield from _activity_types(value)
    elif isinstance(node, list):
        for value in node:
            yield from _activity_types(value)


class _Tiny(Contract):
    open_task = Activity("open_task", OpenTaskInput, OpenTaskResult, STORE)
    note = Activity("note", RunActionInput, NOTHING, STORE)


class _Implements:
    @activity.defn(name=_Tiny.open_task.name)
    def open_task(self, input: OpenTaskInput) -> OpenTaskResult:
        return OpenTaskResult(task_id=input.task_id, assignee="ana")

    @activity.defn(name=_Tiny.note.name)
    def note(self, input: RunActionInput) -> None:
        return None

    @property
    def never_read(self) -> str:
        raise AssertionError("a property of an activity holder is never evaluated")


class _AlsoOpens:
    @activity.defn(name=_Tiny.open_task.name)
    def open_it(self, input: OpenTaskInput) -> OpenTaskResult:
        return OpenTaskResult(task_id=input.task_id, assignee="ben")


class _Unlisted:
    @activity.defn(name="archive")
    def archive(self, input: RunActionInput) -> None:
        return None


class _WrongTypes:
    @activity.defn(name=_Tiny.open_task.name)
    def open_task(self, input: RunActionInput) -> None:
        return None


def test_implementations_are_bound_methods_in_the_contracts_order() -> None:
    holder = _Implements()
    assert implementations([_Tiny], [holder]) == [holder.open_task, holder.note]


@pytest.mark.parametrize(
    ("holders", "problem"),
    [
        ([_AlsoOpens()], "activity 'note' has no implementation"),
        (
            [_Implements(), _AlsoOpens()],
            "activity 'open_task' is implemented more than once: "
            "_Implements.open_task, _AlsoOpens.open_it",
        ),
        ([_Implements(), _Unlisted()], "activity 'archive', which no contract names"),
        ([_WrongTypes()], "_WrongTypes.open_task must take one OpenTaskInput"),
        ([_WrongTypes()], "_WrongTypes.open_task must return OpenTaskResult"),
    ],
)
def test_implementations_refuse_what_does_not_match_the_contract(
    holders: list[object], problem: str
) -> None:
    with pytest.raises(ContractError) as raised:
        implementations([_Tiny], holders)
    assert problem in str(raised.value)


# --- names only in the contract --------------------------------------------------------------


def bare_activity_names(path: str, source: str) -> list[str]:
    """Where `source` names an activity other than through a contract, as `path:line: why`."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and _scheduler(node.func) is not None:
            found.append(
                f"{path}:{node.lineno}: {_scheduler(node.func)}(): call through a contract"
            )
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for decorator in node.decorator_list:
                if _activity_defn(decorator) and not _named_by_contract(decorator):
                    found.append(
                        f"{path}:{decorator.lineno}: @activity.defn on {node.name} takes its "
                        "name from a contract: name=<Contract>.<entry>.name"
                    )
        if (
            isinstance(node, ast.Constant)
            and node.value in NAMES
            and (path, node.value) not in NOT_ACTIVITY_NAMES
        ):
            found.append(f"{path}:{node.lineno}: {node.value!r} spelled out; use its contract")
    return found


def _scheduler(func: ast.expr) -> str | None:
    """`workflow.execute_activity` or a bare `execute_activity`: not `super().execute_activity`."""
    if isinstance(func, ast.Name) and func.id in SCHEDULERS:
        return func.id
    if (
        isinstance(func, ast.Attribute)
        and func.attr in SCHEDULERS
        and isinstance(func.value, ast.Name)
        and func.value.id == "workflow"
    ):
        return f"workflow.{func.attr}"
    return None


def _activity_defn(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (
        isinstance(target, ast.Attribute)
        and target.attr == "defn"
        and isinstance(target.value, ast.Name)
        and target.value.id == "activity"
    )


def _named_by_contract(decorator: ast.expr) -> bool:
    if not isinstance(decorator, ast.Call):
        return False  # a bare @activity.defn is named after the method
    name = next((kw.value for kw in decorator.keywords if kw.arg == "name"), None)
    return isinstance(name, ast.Attribute) and name.attr == "name"


def _sources() -> list[Path]:
    files = []
    for root in SCANNED:
        path = ROOT / root
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    return [f for f in files if f.relative_to(ROOT).as_posix() != CONTRACT_MODULE]


def test_no_activity_is_named_outside_its_contract() -> None:
    sources = _sources()
    assert len(sources) > 100 and all(".venv" not in str(f) for f in sources)
    found = [
        problem
        for path in sources
        for problem in bare_activity_names(
            path.relative_to(ROOT).as_posix(), path.read_text(encoding="utf-8")
        )
    ]
    assert found == []


def test_every_exception_to_the_name_check_is_still_needed() -> None:
    for path, name in NOT_ACTIVITY_NAMES:
        tree = ast.parse((ROOT / path).read_text(encoding="utf-8"))
        literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
        assert name in literals, f"{path} no longer says {name!r}: drop its exception"


def test_the_name_check_finds_each_way_of_spelling_a_name_out() -> None:
    source = """
from temporalio import activity, workflow

class Acts:
    @activity.defn
    def open_task(self, input): ...

    @activity.defn(name="archive")
    def archive(self, input): ...

    @activity.defn(name=ProcessContract.close_task.name)
    def close_task(self, input): ...

async def run():
    await workflow.execute_activity(ProcessContract.open_task.name, None)
    await workflow.execute_activity_method(Acts.open_task, None)
    if name == "record_step":
        ...

class Interceptor:
    async def execute_activity(self, input):
        return await super().execute_activity(input)
"""
    found = bare_activity_names("example.py", source)
    assert [line.split(":")[1] for line in found] == ["5", "8", "15", "16", "17"]
    assert "workflow.execute_activity_method()" in found[3]
    assert "'record_step' spelled out" in found[4]


# --- workflows import no implementation ------------------------------------------------------


@pytest.mark.parametrize(
    "module",
    [
        "workflows.contracts",
        "workflows.summary",
        "workflows.monitor",
        "workflows.process",
        "workflows.interpreter",
    ],
)
def test_a_workflow_module_imports_neither_the_store_nor_an_activity_implementation(
    module: str,
) -> None:
    heavy = ("duly.store", "sqlmodel", "sqlalchemy", "activities.process", "activities.summary")
    heavy += ("activities.monitors", "activities.actions", "activities.crm")
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, {module}; print('\\n'.join(sys.modules))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert module in loaded
    assert [name for name in loaded if name.startswith(heavy)] == []


@pytest.mark.parametrize(
    "model", [StartInstanceInput, FinishInstanceInput, OpenTaskInput, RunActionInput, StepWrites]
)
def test_an_input_that_carries_writes_refuses_a_field_it_does_not_know(model: type) -> None:
    # as a worker older than the workflow code would: retried until a newer worker takes it,
    # rather than dropping what the new field was to write
    with pytest.raises(ValidationError) as refused:
        model.model_validate({"later_field": {"closes": []}})
    assert ("extra_forbidden", ("later_field",)) in [
        (e["type"], e["loc"]) for e in refused.value.errors()
    ]
