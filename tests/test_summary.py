"""The weekly manager summary, on hand-made facts: its figures, its text and HTML, and that a
manager gets it once per channel and week through a real SMTP server."""

from __future__ import annotations

import email
import email.policy
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import func, select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.summary import SummaryActivities
from duly.language.loader import Definitions
from duly.notify import Deliverer, DeliveryPolicy
from duly.settings import Settings
from duly.store import rollup
from duly.store.crud import publish_definitions, sync_org
from duly.store.db import SessionFactory, create_all, make_engine, session_factory, write_session
from duly.store.models import Delivery, Instance, StepFact, Task
from duly.summary import (
    SummaryError,
    build_summary,
    last_week,
    parse_week,
    summary_key,
    week_bounds,
)
from duly.summary_schedule import ScheduledStart, start_week
from workflows.contracts import SummaryContract, implementations
from workflows.sandbox import workflow_runner
from workflows.summary import WeeklySummaryWorkflow, weekly_summary_id
from workflows.summary_messages import WeeklySummaryInput, WeeklySummaryResult

ROOT = Path(__file__).resolve().parent.parent / "definitions"
W46 = datetime(2026, 11, 10, 15, 0, tzinfo=UTC)  # a Tuesday, 10:00 in New York
W47 = datetime(2026, 11, 17, 15, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)  # Monday of 2026-W48
# quick polls; a send timeout and lease no loaded machine meets, so each summary is sent once
FAST = DeliveryPolicy(batch_size=10, poll_interval=0.02, lease=60.0, send_timeout=10.0)


@pytest.fixture
def sessions(tmp_path: Path, definitions: Definitions) -> SessionFactory:
    """A database with the shipped org and hand-made facts of 2026-W46 and 2026-W47."""
    engine = make_engine(f"sqlite:///{tmp_path / 'duly.db'}")
    create_all(engine)
    factory = session_factory(engine)
    with write_session(factory) as session:
        sync_org(session=session, org=definitions.org)
        publish_definitions(session=session, processes=definitions.processes.values())
    counter = iter(range(1000))

    def facts(process: str, rep: str, opened: datetime, met: int, breached: int) -> None:
        for sla_met in [True] * met + [False] * breached:
            n = next(counter)
            instance = f"{process}/K-{n}/run{n}"
            session.add(
                Instance(
                    id=instance,
                    process=process,
                    version=definitions.processes[process].version,
                    hash="a" * 64,
                    business_key=f"K-{n}",
                    status="completed",
                    started_at=opened,
                )
            )
            session.add(
                StepFact(
                    instance_id=instance,
                    process=process,
                    version=definitions.processes[process].version,
                    step="first-call" if process == "lead-follow-up" else "call-customer",
                    kind="task",
                    visit=1,
                    assignee=rep,
                    team="inbound-sales",
                    opened_at=opened,
                    due_at=opened + timedelta(hours=1),
                    closed_at=opened + timedelta(minutes=30 if sla_met else 90),
                    outcome="reached",
                    sla_met=sla_met,
                )
            )

    with write_session(factory) as session:
        facts("lead-follow-up", "ana", W47, 5, 0)
        facts("lead-follow-up", "ana", W46, 4, 0)
        facts("lead-follow-up", "ben", W47, 2, 3)  # below the 90% goal
        facts("lead-follow-up", "ben", W46, 3, 1)
        facts("lead-follow-up", "chloe", W47, 9, 1)  # 90%: on goal, but down from 100%
        facts("lead-follow-up", "chloe", W46, 5, 0)
        facts("lead-follow-up", "maria", W47, 0, 1)  # took over a late task: not a rep
        facts("quote-follow-up", "ana", W47, 2, 0)
        # open now, past due: a breach of Maria's team still open, and one of Omar's
        for process, team, who, title in (
            ("quote-follow-up", "inbound-sales", "ben", "Call <b>Acme</b> about Q-7"),
            ("support-case", "support", "dev", "Answer Lee"),
        ):
            n = next(counter)
            instance = f"{process}/K-{n}/run{n}"
            session.add(
                Instance(
                    id=instance,
                    process=process,
                    version=1,
                    hash="a" * 64,
                    business_key=f"K-{n}",
                    started_at=W47,
                )
            )
            session.add(
                Task(
                    id=f"{instance}/step/1",
                    instance_id=instance,
                    process=process,
                    step="call-customer",
                    visit=1,
                    title=title,
                    assignee=who,
                    team=team,
                    opened_at=W47,
                    due_at=W47 + timedelta(days=2),
                )
            )
    with write_session(factory) as session:
        rollup.rebuild(session)  # facts written by hand: count them into the weekly rollup
    return factory


def test_weeks_are_iso_weeks_and_a_bad_one_says_how_to_write_it() -> None:
    assert parse_week("2026-W48") == (2026, 48)
    assert last_week(NOW) == "2026-W47"
    since, until = week_bounds("2026-W47", "America/New_York")
    assert (since, until) == (
        datetime(2026, 11, 16, 5, 0, tzinfo=UTC),
        datetime(2026, 11, 23, 5, 0, tzinfo=UTC),
    )
    with pytest.raises(SummaryError, match="write it like 2026-W48"):
        parse_week("48/2026")
    with pytest.raises(SummaryError, match="2026 has no week 54"):
        parse_week("2026-W54")


def test_a_summary_shows_attainment_against_the_goal_who_slipped_and_open_breaches(
    sessions: SessionFactory, definitions: Definitions
) -> None:
    with sessions() as session:
        summary = build_summary(session, definitions, "maria", "2026-W47", now=NOW)
    lines = {p.process: p for p in summary.processes}
    assert set(lines) == {"lead-follow-up", "quote-follow-up"}  # her team's processes only
    lead = lines["lead-follow-up"]
    assert (lead.met, lead.breached, lead.goal) == (16, 5, 0.9)
    assert lead.attainment == pytest.approx(16 / 21)
    assert lead.previous_attainment == pytest.approx(12 / 13)
    assert lead.meets_goal is False
    quote = lines["quote-follow-up"]  # the open, overdue task counts as breached
    assert (quote.met, quote.breached) == (2, 1)
    assert [(s.rep, s.process, s.reason) for s in summary.slipped] == [
        ("ben", "quote-follow-up", "below the 95% goal"),
        ("ben", "lead-follow-up", "below the 90% goal"),
        ("chloe", "lead-follow-up", "down from 100% the week before"),
    ]
    assert summary.open_breach_count == 1
    assert [b.title for b in summary.open_breaches] == ["Call <b>Acme</b> about Q-7"]
    assert summary.open_breaches[0].overdue_hours == pytest.approx(94.0)

    text = summary.text()
    assert "Weekly summary for Maria Lopez, 2026-W47 (teams: inbound-sales)" in text
    assert "76% (goal 90%, 16 met, 5 breached; week before 92%)  BELOW GOAL" in text
    assert "Ben Carter (ben), lead-follow-up: 40%, below the 90% goal" in text
    assert "Open breaches right now: 1" in text
    html = summary.html()
    assert "Call &lt;b&gt;Acme&lt;/b&gt; about Q-7" in html and "<b>Acme" not in html
    assert summary.subject == ("Weekly summary 2026-W47: 2 below goal, 3 slipped, 1 open breaches")


def test_a_rep_below_the_goal_slipped_whatever_team_their_visits_counted_for(
    sessions: SessionFactory, definitions: Definitions
) -> None:
    # ana (maria's team) is on goal in lead-follow-up for inbound-sales, but that week she also
    # worked quotes counted for another team, and missed most of them: 2 met of 5 in W47
    with write_session(sessions) as session:
        for n, sla_met in enumerate([True, True, False, False, False]):
            instance = f"quote-follow-up/X-{n}/run"
            session.add(
                Instance(id=instance, process="quote-follow-up", version=1, hash="a" * 64,
                         business_key=f"X-{n}", status="completed", started_at=W47)
            )  # fmt: skip
            session.add(
                StepFact(instance_id=instance, process="quote-follow-up", version=1,
                         step="call-customer", kind="task", visit=1, assignee="ana",
                         team="support", opened_at=W47, due_at=W47 + timedelta(hours=1),
                         closed_at=W47 + timedelta(minutes=30), outcome="reached",
                         sla_met=sla_met)
            )  # fmt: skip
    with write_session(sessions) as session:
        rollup.rebuild(session)
    with sessions() as session:
        summary = build_summary(session, definitions, "maria", "2026-W47", now=NOW)
    anas = [(s.process, s.reason) for s in summary.slipped if s.rep == "ana"]
    assert anas == [("quote-follow-up", "below the 95% goal")]
    (slip,) = [s for s in summary.slipped if s.rep == "ana"]
    assert slip.attainment == pytest.approx(4 / 7)  # with her 2 of 2 for inbound-sales


def test_a_user_who_manages_no_team_gets_a_clear_error(
    sessions: SessionFactory, definitions: Definitions
) -> None:
    with sessions() as session, pytest.raises(SummaryError, match="'ana' manages no team"):
        build_summary(session, definitions, "ana", "2026-W47", now=NOW)


def _parts(envelope: Any) -> tuple[Any, dict[str, str]]:
    message = email.message_from_bytes(envelope.content, policy=email.policy.default)
    parts = {
        part.get_content_type(): part.get_payload(decode=True).decode()
        for part in message.walk()
        if not part.is_multipart()
    }
    return message, parts


@asynccontextmanager
async def summary_worker(
    env: WorkflowEnvironment, task_queue: str, activities: SummaryActivities
) -> AsyncIterator[None]:
    """A worker running the weekly summary workflow and its activity."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[WeeklySummaryWorkflow],
            activities=implementations([SummaryContract], [activities]),
            activity_executor=pool,
            workflow_runner=workflow_runner(),
        ):
            yield


async def test_the_weekly_run_sends_each_manager_one_email_per_week_however_often_triggered(
    sessions: SessionFactory,
    definitions: Definitions,
    time_skipping_env: WorkflowEnvironment,
    task_queue: str,
    smtp: tuple[Settings, Any],
) -> None:
    settings, inbox = smtp
    activities = SummaryActivities(sessions, settings, definitions)
    async with summary_worker(time_skipping_env, task_queue, activities):
        client = time_skipping_env.client
        assert await start_week(client, "2026-W47", task_queue=task_queue)
        handle = client.get_workflow_handle(
            weekly_summary_id("2026-W47"), result_type=WeeklySummaryResult
        )
        result = await handle.result()
        assert result.queued == {"maria": ["email"], "omar": ["email"]}
        # a second trigger of the same week (another worker's scheduler) runs nothing
        assert not await start_week(client, "2026-W47", task_queue=task_queue)
        assert not await ScheduledStart(task_queue)(client, NOW)  # Monday of W48: W47

    deliverer = Deliverer(sessions, settings, policy=FAST)
    assert await deliverer.deliver_due() == 2
    # the activity run again for the week (a retry, a run after Temporal forgot the first)
    again = activities.send_weekly_summaries(WeeklySummaryInput(week="2026-W47", now=NOW))
    assert again.queued == {"maria": [], "omar": []}
    assert await deliverer.deliver_due() == 0
    await deliverer.aclose()

    with sessions() as session:
        keys = session.exec(select(Delivery.key, Delivery.status)).all()
        assert sorted(keys) == [
            (f"{summary_key('maria', '2026-W47')}:email", "sent"),
            (f"{summary_key('omar', '2026-W47')}:email", "sent"),
        ]
        assert session.exec(select(func.count()).select_from(Delivery)).one() == 2
    assert sorted(e.rcpt_tos[0] for e in inbox.envelopes) == [
        "maria@example.com",
        "omar@example.com",
    ]
    maria = next(e for e in inbox.envelopes if e.rcpt_tos == ["maria@example.com"])
    message, parts = _parts(maria)
    assert str(message["Subject"]).strip().startswith("Weekly summary 2026-W47: 2 below goal")
    assert "Ben Carter (ben), lead-follow-up: 40%, below the 90% goal" in parts["text/plain"]
    assert "<h2" in parts["text/html"]
    assert "Call &lt;b&gt;Acme&lt;/b&gt;" in parts["text/html"]


async def test_one_managers_early_send_leaves_the_run_for_everyone_to_the_others(
    sessions: SessionFactory,
    definitions: Definitions,
    time_skipping_env: WorkflowEnvironment,
    task_queue: str,
    smtp: tuple[Settings, Any],
) -> None:
    settings, inbox = smtp
    settings = settings.model_copy(update={"public_url": "https://duly.example.com/"})
    activities = SummaryActivities(sessions, settings, definitions)
    async with summary_worker(time_skipping_env, task_queue, activities):
        client = time_skipping_env.client
        week = "2026-W46"
        assert await start_week(client, week, task_queue=task_queue, managers=["maria"])
        early = await client.get_workflow_handle(
            weekly_summary_id(week, ["maria"]), result_type=WeeklySummaryResult
        ).result()
        assert early.queued == {"maria": ["email"]}
        # the Monday run for everyone still runs: omar's is queued, maria's is not again
        assert await start_week(client, week, task_queue=task_queue)
        everyone = await client.get_workflow_handle(
            weekly_summary_id(week), result_type=WeeklySummaryResult
        ).result()
        assert everyone.queued == {"maria": [], "omar": ["email"]}

    deliverer = Deliverer(sessions, settings, policy=FAST)
    assert await deliverer.deliver_due() == 2
    await deliverer.aclose()
    assert sorted(e.rcpt_tos[0] for e in inbox.envelopes) == [
        "maria@example.com",
        "omar@example.com",
    ]
    # links point where people reach the web app (DULY_PUBLIC_URL), not where it listens
    maria = next(e for e in inbox.envelopes if e.rcpt_tos == ["maria@example.com"])
    _, parts = _parts(maria)
    assert 'href="https://duly.example.com/instances/' in parts["text/html"]
    assert "127.0.0.1" not in parts["text/html"]


def test_the_command_prints_a_managers_summary_and_refuses_a_bad_week(
    sessions: SessionFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from duly.cli import app

    monkeypatch.setenv("DULY_DATA_DIR", str(tmp_path))
    shown = CliRunner().invoke(
        app, ["summary", "--week", "2026-W47", "--manager", "maria", "--definitions", str(ROOT)]
    )
    assert shown.exit_code == 0, shown.output
    assert "Subject: Weekly summary 2026-W47: 2 below goal" in shown.output
    assert "Chloe Martin (chloe), lead-follow-up: 90%, down from 100% the week before" in (
        shown.output
    )
    bad = CliRunner().invoke(app, ["summary", "--week", "W47", "--definitions", str(ROOT)])
    assert bad.exit_code == 1
    assert "--week: 'W47' is not an ISO week; write it like 2026-W48" in bad.output
    nobody = CliRunner().invoke(
        app, ["summary", "--send", "--manager", "mария", "--definitions", str(ROOT)]
    )
    assert nobody.exit_code == 1
    assert "--manager: 'mария' manages no team in org.yaml (managers: maria, omar)" in nobody.output
