"""The rules of "How duly counts" (docs/language.md), pinned on a hand-counted fact table as
the engine writes it, on SQLite and PostgreSQL, from the rollup and from the facts.

Week B of quote-follow-up, call-customer visits:

    instance  held by           what happened                                  counts as
    Q-1       ana, then maria   breached Wed, reassigned to maria Thu, done    breach: ana's
    Q-2       ben               quote accepted at 9 minutes, before its due   not applicable
    Q-3       ben               quote accepted after its due time              breach: ben's
    Q-4       ben               done in 1 h, on time                           met: ben's

So: ana 0 met / 1 breached, ben 1 / 1, maria nothing; durations count only what was done
(Q-1 for ana, Q-4 for ben): a cancelled task has no time to complete.
"""

from __future__ import annotations

from datetime import timedelta

import pytest

from duly.language.loader import Definitions
from duly.reports import ReportQuery, attainment, durations, funnel
from duly.store.db import SessionFactory

from .conftest import NOW, PROCESS, WEEK_B, History

QUOTES = ReportQuery(process=PROCESS, weeks=3)
HOUR = timedelta(hours=1)
pytestmark = pytest.mark.usefixtures("paths")


@pytest.fixture
def counted(history: History, sessions: SessionFactory) -> SessionFactory:
    h = history
    h.fact("Q-1", WEEK_B + 14 * HOUR, rep="ana", final="maria", outcome="lost", met=False,
           rung=3, seconds=60_000)  # fmt: skip
    h.fact("Q-2", WEEK_B + 15 * HOUR, rep="ben", outcome="event:quote.accepted", due=True,
           timed=False)  # fmt: skip
    h.fact("Q-3", WEEK_B + 16 * HOUR, rep="ben", outcome="event:quote.accepted", met=False,
           rung=2, timed=False)  # fmt: skip
    h.fact("Q-4", WEEK_B + 17 * HOUR, rep="ben", outcome="reached", met=True, rung=0,
           seconds=3600)  # fmt: skip
    return sessions


def test_a_breach_counts_for_who_held_the_task_when_it_breached(
    counted: SessionFactory, definitions: Definitions
) -> None:
    with counted() as session:
        report = attainment(session, QUOTES.model_copy(update={"by": "rep"}),
                            definitions=definitions, now=NOW)  # fmt: skip
        marias = attainment(session, QUOTES.model_copy(update={"rep": "maria"}),
                            definitions=definitions, now=NOW)  # fmt: skip
    rows = {row.key: (row.met, row.breached, row.attainment) for row in report.rows}
    assert rows == {"ana": (0, 1, 0.0), "ben": (1, 1, 0.5)}
    assert marias.total.measured == 0  # took it over late: not measured on ana's clock


def test_a_task_cancelled_before_its_deadline_is_neither_met_nor_breached(
    counted: SessionFactory, definitions: Definitions
) -> None:
    with counted() as session:
        total = attainment(session, QUOTES, definitions=definitions, now=NOW).total
    # Q-2 is in no count: 1 met, 2 breached
    assert (total.met, total.breached, total.measured) == (1, 2, 3)
    assert total.attainment == pytest.approx(1 / 3)


def test_a_cancelled_task_has_no_duration(
    counted: SessionFactory, definitions: Definitions
) -> None:
    with counted() as session:
        report = durations(session, QUOTES.model_copy(update={"by": "rep"}),
                           definitions=definitions, now=NOW)  # fmt: skip
    rows = {row.key: (row.count, row.p50_seconds) for row in report.rows}
    assert rows == {"ana": (1, 60_000), "ben": (1, 3600)}


def test_the_funnel_counts_each_of_them_once(
    counted: SessionFactory, definitions: Definitions
) -> None:
    with counted() as session:
        report = funnel(session, QUOTES, definitions=definitions, now=NOW)
    assert report.started == 4
    assert [(s.step, s.instances, s.share) for s in report.steps] == [("call-customer", 4, 1.0)]
