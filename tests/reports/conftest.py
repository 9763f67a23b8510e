"""A small hand-worked history of quote-follow-up, written through the real activities, on
SQLite and PostgreSQL (`engine`, tests/conftest.py).

Weeks are New York weeks (quote-follow-up's calendar, UTC-5 in November 2026):
A = 2026-W46 (Mon 9 Nov), B = 2026-W47 (Mon 16 Nov), C = 2026-W48 (Mon 23 Nov). Every report
is asked at NOW, Wednesday of week C, for the last three weeks.

call-customer visits (SLA'd; rung = highest escalation rung reached; seconds = business):

    week  rep    instance  outcome    sla       rung  seconds
    A     ana    Q-1       reached    met       0       3600
    A     ana    Q-2 (v1)  voicemail  met       0       7200
    A     ben    Q-3       reached    met       1       1800
    A     ben    Q-4       lost       breached  2     200000  (Sun 22:00 NY = Mon 03:00Z: week A)
    B     ana    Q-2 (v2)  reached    met       0        600
    B     ben    Q-5       voicemail  breached  3     300000
    B     chloe  Q-6       reached    met       0        900
    C     ana    Q-7       lost       breached  2      90000
    before the period: ana Q-0 breached (Sun 8 Nov 23:00 NY)

Each instance starts when its first visit opens (Q-0 before the period, the others in it).
Open tasks now: ana Q-8 (opened Mon of C, due Tue: overdue), ana Q-9 (due Friday: not yet).
Other facts: send-summary (action) and won (end) for Q-1, Q-2, Q-3, Q-6; lost (end) for Q-4,
Q-7. And one support-case fact for dev, which a quote-follow-up filter leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from activities.messages import OpenTaskInput, RecordStepInput, StartInstanceInput
from activities.process import ProcessActivities
from duly.language.loader import Definitions
from duly.reports import filters
from duly.settings import Settings
from duly.store.crud import sync_org
from duly.store.db import SessionFactory, session_factory, write_session

PROCESS = "quote-follow-up"
NOW = datetime(2026, 11, 25, 18, 0, tzinfo=UTC)
WEEK_A = datetime(2026, 11, 9, 5, 0, tzinfo=UTC)  # Monday 00:00 New York
WEEK_B = WEEK_A + timedelta(weeks=1)
WEEK_C = WEEK_B + timedelta(weeks=1)
LABELS = ("2026-W46", "2026-W47", "2026-W48")


@pytest.fixture(params=["rollup", "facts"])
def paths(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Reports read the weekly rollup where they can, or (to prove they agree) the facts only."""
    monkeypatch.setattr(filters, "USE_ROLLUP", request.param == "rollup")
    return str(request.param)


@pytest.fixture
def sessions(engine: Engine, definitions: Definitions) -> SessionFactory:
    """Sessions on an empty database with the shipped org synced."""
    with write_session(session_factory(engine)) as session:
        sync_org(session=session, org=definitions.org)
    return session_factory(engine)


@pytest.fixture
def acts(sessions: SessionFactory) -> ProcessActivities:
    """The process activities, writing to `sessions`."""
    return ProcessActivities(sessions, Settings())


@dataclass
class History:
    """Writes facts and tasks through the activities, recording each instance once."""

    acts: ProcessActivities
    definitions: Definitions
    started: set[str] = field(default_factory=set)

    def instance(self, key: str, process: str = PROCESS, started_at: datetime | None = None) -> str:
        """The instance of `key`, recorded as started at `started_at` (its first visit's
        opening) the first time it is named."""
        instance_id = f"{process}/{key}"
        if instance_id not in self.started:
            compiled = self.definitions.processes[process]
            self.acts.start_instance(
                StartInstanceInput(
                    instance_id=instance_id,
                    process=process,
                    version=compiled.version,
                    hash=compiled.hash,
                    compiled_json=compiled.model_dump_json(),
                    business_key=key,
                    started_at=started_at or WEEK_A - timedelta(days=7),
                )
            )
            self.started.add(instance_id)
        return instance_id

    def fact(
        self,
        key: str,
        opened_at: datetime,
        *,
        step: str = "call-customer",
        kind: str = "task",
        visit: int = 1,
        rep: str | None = "ana",
        team: str | None = "inbound-sales",
        outcome: str | None = None,
        met: bool | None = None,
        rung: int | None = None,
        seconds: float | None = None,
        process: str = PROCESS,
        due: bool | None = None,
        timed: bool = True,
        final: str | None = None,
    ) -> None:
        """One fact; `due` gives a visit without a verdict a due time (not applicable),
        `timed=False` leaves its duration out (a cancelled task), `final` is who closed it."""
        instance_id = self.instance(key, process, opened_at)
        sla = met is not None
        self.acts.record_step(
            RecordStepInput(
                instance_id=instance_id,
                process=process,
                version=1,
                step=step,
                kind=kind,
                visit=visit,
                assignee=rep,
                team=team,
                opened_at=opened_at,
                due_at=opened_at + timedelta(days=2) if sla or due else None,
                closed_at=opened_at + timedelta(seconds=seconds or 60),
                outcome=outcome,
                sla_met=met,
                breached_at=None if met or not sla else opened_at + timedelta(days=2),
                highest_rung=rung if sla else None,
                business_seconds=(seconds if seconds is not None else 0.0) if timed else None,
                final_assignee=final,
            )
        )

    def open_task(self, key: str, opened_at: datetime, due_at: datetime, rep: str) -> None:
        instance_id = self.instance(key, started_at=opened_at)
        self.acts.open_task(
            OpenTaskInput(
                task_id=f"{instance_id}/call-customer/1",
                instance_id=instance_id,
                process=PROCESS,
                step="call-customer",
                visit=1,
                title=f"Call about {key}",
                assign=f"user:{rep}",
                team="inbound-sales",
                outcomes=["reached", "voicemail", "lost"],
                opened_at=opened_at,
                due_at=due_at,
            )
        )


@pytest.fixture
def history(acts: ProcessActivities, definitions: Definitions) -> History:
    """An empty history to write into."""
    return History(acts, definitions)


@pytest.fixture
def worked(history: History, sessions: SessionFactory) -> SessionFactory:
    """The hand-worked history of the module docstring."""
    write_worked(history)
    return sessions


def write_worked(h: History) -> None:
    """Write the hand-worked history of the module docstring."""
    hour = timedelta(hours=1)
    h.fact("Q-1", WEEK_A + 14 * hour, outcome="reached", met=True, rung=0, seconds=3600)
    h.fact("Q-2", WEEK_A + 15 * hour, outcome="voicemail", met=True, rung=0, seconds=7200)
    h.fact("Q-3", WEEK_A + 40 * hour, rep="ben", outcome="reached", met=True, rung=1, seconds=1800)
    h.fact(
        "Q-4",
        WEEK_B - 2 * hour,  # Sunday 22:00 in New York, Monday 03:00 UTC
        rep="ben",
        outcome="lost",
        met=False,
        rung=2,
        seconds=200_000,
    )
    h.fact("Q-2", WEEK_B + 14 * hour, visit=2, outcome="reached", met=True, rung=0, seconds=600)
    h.fact("Q-5", WEEK_B + 20 * hour, rep="ben", outcome="voicemail", met=False, rung=3,
           seconds=300_000)  # fmt: skip
    h.fact("Q-6", WEEK_B + 30 * hour, rep="chloe", outcome="reached", met=True, rung=0, seconds=900)
    h.fact("Q-7", WEEK_C + 14 * hour, outcome="lost", met=False, rung=2, seconds=90_000)
    h.fact("Q-0", WEEK_A - hour, outcome="lost", met=False, rung=1, seconds=50_000)
    for key, opened in (("Q-1", WEEK_A), ("Q-2", WEEK_B), ("Q-3", WEEK_A), ("Q-6", WEEK_B)):
        rep = {"Q-3": "ben", "Q-6": "chloe"}.get(key, "ana")
        at = opened + 50 * hour
        h.fact(key, at, step="send-summary", kind="action", rep=rep, outcome=None)
        h.fact(key, at, step="won", kind="end", rep=rep, outcome="won")
    h.fact("Q-4", WEEK_B + 50 * hour, step="lost", kind="end", rep="ben", outcome="lost")
    h.fact("Q-7", WEEK_C + 50 * hour, step="lost", kind="end", outcome="lost")
    h.fact("S-1", WEEK_B + 14 * hour, process="support-case", step="first-response", rep="dev",
           team="support", outcome="answered", met=True, rung=0, seconds=100)  # fmt: skip
    h.open_task("Q-8", WEEK_C + 14 * hour, WEEK_C + 38 * hour, "ana")
    h.open_task("Q-9", NOW - hour, NOW + timedelta(days=2), "ana")
