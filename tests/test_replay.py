"""Saved histories of the shipped processes still replay: the interpreter stays deterministic.

A change to ProcessWorkflow that would break running instances (a different command sequence
for the same history) fails here. Histories are recorded by scripts/record_histories.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.process import ProcessWorkflow
from workflows.sandbox import workflow_runner

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_every_shipped_process_has_a_saved_history() -> None:
    shipped = {
        p.stem for p in (Path(__file__).parent.parent / "definitions/processes").glob("*.yaml")
    }
    # `<process>.<what>.json` keeps an older history that must replay too: `.v<N>` of an older
    # definition version, `.audit-first` from before the breach's rung fired ahead of its audit,
    # `.audit-after-rung` from before the rung's escalate wrote the SLA events itself,
    # `.writes-apart` from before a step's close, facts and SLA events rode on one activity,
    # `.start-apart` from before the start rode on the first write and actions carried writes,
    # `.changes-apart` from before a new instance took every change in one marker at its start
    assert {h.stem.split(".")[0] for h in HISTORIES} == shipped


@pytest.mark.parametrize("path", HISTORIES, ids=[h.stem for h in HISTORIES])
async def test_saved_history_replays_without_nondeterminism(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text(encoding="utf-8"))
    replayer = Replayer(
        workflows=[ProcessWorkflow],
        workflow_runner=workflow_runner(),
        data_converter=pydantic_data_converter,
    )
    result = await replayer.replay_workflow(history)
    assert result.replay_failure is None
