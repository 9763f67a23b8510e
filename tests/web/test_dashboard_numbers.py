"""The dashboard's numbers read as what they are: a trend is its slope, coloured by attainment
against the goal (not by direction), and breaches are listed by the instant they breached."""

from __future__ import annotations

import re
from datetime import timedelta

from api.conftest import Api

from duly.api.web.dashboard import slope_text
from duly.store import rollup
from duly.store.crud import publish_definitions
from duly.store.db import write_session
from duly.store.models import Instance, StepFact
from duly.store.types import utc_now
from web.test_pages import sign_in

PROCESS = "quote-follow-up"


def add_weeks(api: Api) -> list[str]:
    """Ana over four weeks: 1, 2, 2, 3 met of 4 (rising, always below the 95% goal); and three
    breaches whose closing order is not their breaching order. Returns the keys newest first."""
    now = utc_now()
    n = 0
    with write_session(api.sessions) as session:

        def fact(opened, met, breached_at=None, closed=None, key=None) -> None:  # type: ignore[no-untyped-def]
            nonlocal n
            n += 1
            instance = f"{PROCESS}/{key or f'T-{n}'}/run"
            session.add(
                Instance(id=instance, process=PROCESS, version=1, hash="a" * 64,
                         business_key=key or f"T-{n}", started_at=opened)
            )  # fmt: skip
            session.add(
                StepFact(instance_id=instance, process=PROCESS, version=1, step="call-customer",
                         kind="task", visit=1, assignee="ana", team="inbound-sales",
                         opened_at=opened, due_at=breached_at or opened + timedelta(hours=1),
                         closed_at=closed or opened + timedelta(hours=2), outcome="reached",
                         sla_met=met, breached_at=breached_at, highest_rung=0)
            )  # fmt: skip

        for weeks_ago, met in ((3, 1), (2, 2), (1, 2)):
            start = now - timedelta(weeks=weeks_ago)
            for i in range(4):
                fact(start + timedelta(minutes=i), i < met)
        start = now - timedelta(days=2)
        # breached at -40 h, -30 h, -20 h; closed in another order
        fact(start, True)
        fact(start, True)
        fact(start, True)
        fact(start, False, start + timedelta(hours=8), start + timedelta(hours=40), key="B-old")
        fact(start, False, start + timedelta(hours=28), start + timedelta(hours=29), key="B-new")
        fact(start, False, start + timedelta(hours=18), start + timedelta(hours=45), key="B-mid")
    with write_session(api.sessions) as session:
        publish_definitions(session=session, processes=api.definitions.processes.values())
    with write_session(api.sessions) as session:
        rollup.rebuild(session)  # facts written by hand: counted into the weekly rollup
    return ["B-new", "B-mid", "B-old"]


def test_a_slope_reads_as_points_per_week() -> None:
    assert slope_text(3.2) == "+3 pts/wk"
    assert slope_text(-12.6) == "-13 pts/wk"
    assert slope_text(0.2) == "±0 pts/wk"
    assert slope_text(None) == "–"


async def test_a_rising_rep_below_the_goal_is_not_shown_as_good_news(offline_api: Api) -> None:
    newest_first = add_weeks(offline_api)
    await sign_in(offline_api, "maria")
    page = await offline_api.http.get(f"/dashboard?process={PROCESS}&weeks=4")
    assert page.status_code == 200, page.text
    row = re.search(r'<tr data-rep="ana">(.*?)</tr>', page.text, re.S)
    assert row is not None
    trend = re.search(r'<span class="trend ([^"]+)"[^>]*>([^<]*)</span>', row.group(1))
    assert trend is not None
    classes, text = trend.groups()
    assert "trend-below-goal" in classes and "improving" not in text
    assert re.fullmatch(r"▲ \+\d+ pts/wk", text.strip()), text

    # the funnel's base is said: the 18 instances started in the four weeks
    assert "of the 18 that started in these weeks" in page.text
    table = page.text.split('id="breaches"', 1)[1]
    listed = re.findall(r'href="/instances/[^"]+">([^<]+)</a>', table)
    # the three of this week first, then the weekly misses, each week's after the newer one's
    assert listed[:3] == newest_first
    weeks_ago = [int(key.removeprefix("T-")) for key in listed[3:]]
    assert weeks_ago == sorted(weeks_ago, reverse=True) and len(weeks_ago) == 7
