"""Every notification's text, HTML email and Slack message, compared byte for byte with files.

The messages are made the way the worker makes them (the activities open a task and run the
rungs of its ladder on a database holding the shipped quote process) and read back from the
outbox. A change to what a message says shows here as a diff of the golden files under
tests/notify/golden/; when the change is wanted, regenerate them and review the diff:

    DULY_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/notify/test_golden.py
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import select

from activities.messages import EscalateInput, OpenTaskInput, StartInstanceInput
from activities.process import ProcessActivities
from duly.language.loader import Definitions
from duly.language.model import OrgSpec
from duly.settings import Settings
from duly.store.crud import sync_org
from duly.store.db import create_all, make_engine, session_factory, write_session
from duly.store.models import Delivery

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = bool(os.environ.get("DULY_REGENERATE_GOLDEN"))
INSTANCE = "quote-follow-up/Q-1042/0190a1b2c3d4"
TASK = f"{INSTANCE}/call-customer/1"
OPENED = datetime(2026, 11, 18, 14, 0, tzinfo=UTC)  # Wednesday 09:00 in New York
DUE = datetime(2026, 11, 20, 14, 0, tzinfo=UTC)  # two business days later
SETTINGS = Settings(public_url="https://duly.example.com", ack_secret="golden-secret")

ORG = OrgSpec.model_validate(
    {
        "users": {
            "maria": {
                "name": "Maria Lopez",
                "role": "manager",
                "channels": {"email": "maria@example.com", "slack": "http://127.0.0.1:9/maria"},
            },
            "ana": {
                "name": "Ana Silva",
                "timezone": "Europe/Lisbon",
                "channels": {"email": "ana@example.com", "slack": "http://127.0.0.1:9/ana"},
            },
        },
        "teams": {"inbound-sales": {"manager": "maria", "members": ["ana"]}},
    }
)


@pytest.fixture
def outbox(tmp_path: Path, definitions: Definitions) -> Iterator[dict[str, Delivery]]:
    """The deliveries a task's assignment and its ladder queue, by `<key>:<channel>`."""
    engine: Engine = make_engine(f"sqlite:///{tmp_path / 'duly.db'}")
    create_all(engine)
    sessions = session_factory(engine)
    with write_session(sessions) as session:
        sync_org(session=session, org=ORG)
    process = definitions.processes["quote-follow-up"]
    acts = ProcessActivities(sessions, SETTINGS)
    acts.start_instance(
        StartInstanceInput(
            instance_id=INSTANCE,
            workflow_id="quote-follow-up/Q-1042",
            process=process.name,
            version=process.version,
            hash=process.hash,
            business_key="Q-1042",
            compiled_json=process.model_dump_json(),
            data={
                "quote": {"id": "Q-1042", "number": "Q-1042", "amount": 12000},
                "contact": {"name": "Lee <Park> & Co", "email": "lee@example.com"},
                "owner": "ana",
            },
            started_at=OPENED,
        )
    )
    acts.open_task(
        OpenTaskInput(
            task_id=TASK,
            instance_id=INSTANCE,
            process=process.name,
            step="call-customer",
            visit=1,
            title="Call Lee <Park> & Co about quote Q-1042",
            assign="owner",
            owner="ana",
            team="inbound-sales",
            outcomes=["reached", "voicemail", "lost"],
            opened_at=OPENED,
            due_at=DUE,
        )
    )
    rungs = [(0.75, "warning", "assignee", None), (1.0, "breach", "manager", None)]
    rungs.append((1.5, "escalation", None, "manager"))
    window = DUE - OPENED
    for rung, (share, level, notify, reassign) in enumerate(rungs):
        # business time: 2 days of 8 open hours; 75% is 12 open hours after opening
        fired = {0: datetime(2026, 11, 19, 18, 0, tzinfo=UTC), 1: DUE}.get(
            rung, datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
        )
        assert fired - OPENED <= window * 3
        acts.escalate(
            EscalateInput(
                alert_key=f"{INSTANCE}/step:call-customer/1/{rung}",
                instance_id=INSTANCE,
                process=process.name,
                step="call-customer",
                clock="step:call-customer",
                rung=rung,
                at_percent=share * 100,
                level=level,  # type: ignore[arg-type]
                notify=notify,
                reassign=reassign,
                task_id=TASK,
                assignee="ana",
                team="inbound-sales",
                due_at=DUE,
                fired_at=fired,
                title="Call Lee <Park> & Co about quote Q-1042",
            )
        )
    with sessions() as session:
        rows = {row.key: row for row in session.exec(select(Delivery))}
    yield rows
    engine.dispose()


CASES = {
    "task-assigned": f"{TASK}:assigned:ana",
    "warning": f"{INSTANCE}/step:call-customer/1/0:ana",
    "breach": f"{INSTANCE}/step:call-customer/1/1:maria",
    "reassignment": f"{INSTANCE}/step:call-customer/1/2:maria",
}


def check(name: str, actual: str) -> None:
    path = GOLDEN / name
    if REGENERATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(actual.encode())
        return
    assert path.is_file(), f"no golden file {path}: run with DULY_REGENERATE_GOLDEN=1"
    expected = path.read_bytes()
    assert actual.encode() == expected, f"{name} differs from its golden file"


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_message_reads_as_its_golden_files_on_every_channel(
    outbox: dict[str, Delivery], case: str
) -> None:
    key = CASES[case]
    mail, slack = outbox[f"{key}:email"], outbox[f"{key}:slack"]
    check(f"{case}.txt", f"Subject: {mail.subject}\n\n{mail.body}")
    check(f"{case}.html", mail.payload["html"])
    check(f"{case}.slack.json", json.dumps(slack.payload, indent=2, ensure_ascii=False) + "\n")
    assert mail.body == slack.payload["text"].replace("&lt;", "<").replace("&gt;", ">").replace(
        "&amp;", "&"
    ), "Slack's fallback text says what the email says"


def test_the_golden_messages_have_what_people_act_on(outbox: dict[str, Delivery]) -> None:
    breach = outbox[f"{CASES['breach']}:email"]
    text, html = breach.body, breach.payload["html"]
    for needed in (
        "Call Lee <Park> & Co about quote Q-1042",  # the title, rendered for the record
        "Q-1042",  # the record
        "contact.name:  Lee <Park> & Co",
        "2026-11-20 09:00 EST",  # due, in the calendar's zone, with its abbreviation
        "Rung:          2 of 3 (notify manager at 100%)",
        "https://duly.example.com/instances/quote-follow-up/Q-1042/0190a1b2c3d4",
        "Acknowledge: https://duly.example.com/ack/",
    ):
        assert needed in text, needed
    assert "&lt;Park&gt; &amp; Co" in html and "<Park>" not in html
    for remote in ("<img", "src=", "<link", "<style", "url("):
        assert remote not in html  # nothing loads from anywhere: inline styles only
    late = outbox[f"{CASES['reassignment']}:email"].body
    # Mon 13:00 New York vs due Fri 09:00: 12 open hours late, 3 wall days and 4 hours
    assert "late by 12h 00m business time (3d 4h wall time)" in late
    # a rep gets no acknowledge link; her own zone (Lisbon, WET) labels her times
    warning = outbox[f"{CASES['warning']}:email"].body
    assert "/ack/" not in warning and "2026-11-20 14:00 WET" in warning
    assert timedelta(0) < DUE - OPENED


def test_the_weekly_summary_reads_as_its_golden_files_on_every_channel() -> None:
    from duly.notify import render
    from duly.notify.summary_message import summary_message
    from duly.summary import OpenBreach, ProcessLine, Slip, WeeklySummary

    summary = WeeklySummary(
        manager="maria",
        name="Maria Lopez",
        week="2026-W47",
        teams=["inbound-sales"],
        processes=[
            ProcessLine(
                process="quote-follow-up",
                title="Follow up on every sent quote",
                team="inbound-sales",
                goal=0.9,
                met=16,
                breached=5,
                attainment=16 / 21,
                meets_goal=False,
                previous_attainment=0.92,
            )
        ],
        slipped=[
            Slip(
                rep="ben",
                name="Ben Carter",
                process="quote-follow-up",
                attainment=0.4,
                previous_attainment=0.8,
                goal=0.9,
                reason="below the 90% goal",
            )
        ],
        open_breaches=[
            OpenBreach(
                task_id=TASK,
                instance_id=INSTANCE,
                process="quote-follow-up",
                title="Call Lee <Park> & Co about quote Q-1042",
                assignee="ben",
                due_at=DUE,
                overdue_hours=26.5,
            )
        ],
        open_breach_count=3,
        generated_at=datetime(2026, 11, 23, 8, 0, tzinfo=UTC),
        link="https://duly.example.com",
    )
    message = summary_message(summary)
    check("weekly-summary.txt", f"Subject: {message.subject}\n\n{summary.text()}")
    check("weekly-summary.html", summary.html())
    slack = render.slack(message)
    check("weekly-summary.slack.json", json.dumps(slack, indent=2, ensure_ascii=False) + "\n")
    assert summary.text() == render.text(message)
