"""`duly demo`: a short history written by the real worker on the time-skipping server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, col, func, select
from typer.testing import CliRunner

from duly.cli import app
from duly.demo import NOT_SENT, SHIPPED, DemoRefused, assign_profiles, per_rep, run_demo
from duly.language.loader import Definitions
from duly.settings import Settings
from duly.store.db import make_engine
from duly.store.models import Alert, Delivery, Instance, SlaEventRow, StepFact, Task

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


def _rows(engine, statement):
    with Session(engine) as session:
        return session.exec(statement).all()


async def test_a_short_demo_writes_every_process_with_per_rep_differences(
    tmp_path: Path, definitions: Definitions
) -> None:
    settings = Settings(data_dir=tmp_path, definitions=ROOT / "definitions")
    before = datetime.now(UTC)
    result = await run_demo(settings, definitions, weeks=1, seed=3, scale=0.6)
    engine = make_engine(settings.database_url)

    # every shipped process ran, and wrote its fact rows through the real activities
    facts = dict(_rows(engine, select(StepFact.process, func.count()).group_by(StepFact.process)))
    assert set(facts) == set(SHIPPED)
    assert all(count >= 3 for count in facts.values()), facts
    assert result.facts == facts

    # the reliable rep meets the SLA more often than the one who is often late
    profiles = assign_profiles(definitions)
    assert (profiles["ana"].name, profiles["ben"].name) == ("reliable", "often late")
    spread = per_rep(engine)

    def met_share(rep: str) -> float:
        counts = spread[rep]
        return counts["met"] / (counts["met"] + counts["breached"])

    assert met_share("ana") > met_share("ben")
    assert spread["ben"]["breached"] >= 1

    # late reps trip the ladder: breach alerts, SLA events; every instance has ended
    assert result.alerts.get("breach", 0) >= 1
    acked = _rows(
        engine,
        select(
            Alert.created_at, Alert.acknowledged_at, Alert.recipient, Alert.acknowledged_by
        ).where(col(Alert.acknowledged_at).is_not(None)),
    )
    assert acked, "most alerts are acknowledged"
    assert all(made <= at <= datetime.now(UTC) and who == by for made, at, who, by in acked)
    assert _rows(engine, select(func.count()).select_from(SlaEventRow))[0] > 0
    statuses = set(_rows(engine, select(Instance.status)))
    assert statuses == {"completed"}
    assert _rows(engine, select(func.count()).select_from(Task).where(Task.status == "open")) == [0]

    # the history lies in the past: it ends now, never later
    latest = _rows(engine, select(func.max(StepFact.closed_at)))[0]
    assert latest <= datetime.now(UTC)
    earliest = _rows(engine, select(func.min(StepFact.opened_at)))[0]
    assert (before - earliest).days >= 7
    assert _rows(engine, select(func.max(Alert.created_at)))[0] <= datetime.now(UTC)

    # nothing was or will be sent: the queued notifications are marked as the demo's
    deliveries = _rows(engine, select(Delivery.status, Delivery.last_error))
    assert deliveries, "assignments and alerts queue notifications"
    assert set(deliveries) == {("failed", NOT_SENT)}
    assert result.deliveries_marked == len(deliveries)

    # a second run would mix two histories: refused unless asked for
    with pytest.raises(DemoRefused, match="already has .* instances; .*--reset.*--force"):
        await run_demo(settings, definitions, weeks=1)
    count = _rows(engine, select(func.count()).select_from(Instance))[0]
    assert count == sum(result.instances.values())

    # --reset replaces the history; the same seed writes the same one again
    first = _fingerprint(engine)
    again = await run_demo(settings, definitions, weeks=1, seed=3, scale=0.6, reset=True)
    assert again.instances == result.instances
    assert _fingerprint(engine) == first
    engine.dispose()


def _fingerprint(engine) -> list[tuple]:
    """Who did what with which result, without the run ids and timestamps a run makes anew."""
    rows = _rows(
        engine,
        select(
            Instance.business_key,
            StepFact.step,
            StepFact.visit,
            StepFact.assignee,
            StepFact.outcome,
            StepFact.sla_met,
        ).join(Instance, col(Instance.id) == col(StepFact.instance_id)),
    )
    return sorted(rows, key=repr)


def test_the_command_refuses_a_database_with_instances(tmp_path: Path, definitions) -> None:
    from duly.store.db import session_factory, write_session
    from worker import prepare_database

    settings = Settings(data_dir=tmp_path, definitions=ROOT / "definitions")
    engine = prepare_database(settings, definitions)
    with write_session(session_factory(engine)) as session:
        session.add(
            Instance(
                id="quote-follow-up/Q-1/abc",
                process="quote-follow-up",
                version=1,
                hash="a" * 64,
                business_key="Q-1",
                started_at=datetime.now(UTC),
            )
        )
    engine.dispose()
    outcome = CliRunner().invoke(
        app, ["demo", "--data-dir", str(tmp_path), "--definitions", str(ROOT / "definitions")]
    )
    assert outcome.exit_code == 1
    assert "already has 1 instances" in outcome.output
    assert "--reset" in outcome.output
    engine = make_engine(settings.database_url)
    assert _rows(engine, select(col(Instance.id))) == ["quote-follow-up/Q-1/abc"]
    engine.dispose()


async def test_an_interrupted_demo_leaves_no_half_history_and_nothing_to_send(
    tmp_path: Path, definitions: Definitions
) -> None:
    settings = Settings(data_dir=tmp_path, definitions=ROOT / "definitions")
    running = asyncio.create_task(run_demo(settings, definitions, weeks=2, scale=0.5))
    engine = make_engine(settings.database_url)
    for _ in range(600):  # until the engine has written a few instances and notifications
        await asyncio.sleep(0.05)
        if tmp_path.joinpath("duly.db").exists():
            try:
                if _rows(engine, select(func.count()).select_from(Delivery))[0] >= 3:
                    break
            except OperationalError:
                pass  # the tables are being created
    else:
        pytest.fail("the demo wrote nothing within 30 s")
    running.cancel()  # Ctrl-C
    with pytest.raises(asyncio.CancelledError):
        await running
    for model in (Instance, Task, StepFact, Alert, Delivery):
        assert _rows(engine, select(func.count()).select_from(model)) == [0], model
    engine.dispose()
