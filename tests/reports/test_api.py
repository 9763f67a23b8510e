"""The report endpoints: JSON and CSV, and who sees which figures, on both databases."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import Engine
from temporalio.client import Client

from duly.api.app import create_app
from duly.language.loader import Definitions
from duly.services.auth import issue_token
from duly.settings import Settings
from duly.store.db import SessionFactory, write_session

from .conftest import LABELS, WEEK_A, WEEK_C

PERIOD = {
    "process": "quote-follow-up",
    "since": WEEK_A.isoformat(),
    "until": (WEEK_C.replace(day=30)).isoformat(),
}


class ReportsApi:
    def __init__(self, http: httpx.AsyncClient, tokens: dict[str, str]) -> None:
        self.http, self.tokens = http, tokens

    async def get(self, path: str, user: str, **params: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"}
        return await self.http.get(path, params={**PERIOD, **params}, headers=headers)


@pytest_asyncio.fixture(loop_scope="session")
async def api(
    worked: SessionFactory, engine: Engine, definitions: Definitions, tmp_path: Any
) -> AsyncIterator[ReportsApi]:
    async def unreachable() -> Client:
        raise AssertionError("reports never reach Temporal")

    with write_session(worked) as session:
        tokens = {u: issue_token(session=session, user_id=u) for u in ("ana", "maria", "sam")}
    app = create_app(
        Settings(data_dir=tmp_path), definitions, engine=engine, client_factory=unreachable
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://duly.test") as http:
        yield ReportsApi(http, tokens)


async def test_attainment_json_for_an_admin(api: ReportsApi) -> None:
    response = await api.get("/api/reports/attainment", "sam", by="rep")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"]["timezone"] == "America/New_York"
    assert body["scope"]["goal"] == 0.95
    rows = {row["key"]: row for row in body["rows"]}
    assert set(rows) == {"ana", "ben", "chloe"}
    assert (rows["ben"]["met"], rows["ben"]["breached"]) == (1, 2)
    assert rows["ben"]["rungs"] == {"1": 1, "2": 1, "3": 1}


async def test_a_rep_sees_their_own_figures_only(api: ReportsApi) -> None:
    mine = (await api.get("/api/reports/attainment", "ana", by="rep")).json()
    assert [row["key"] for row in mine["rows"]] == ["ana"]
    refused = await api.get("/api/reports/durations", "ana", rep="ben")
    assert refused.status_code == 403
    assert refused.json()["detail"] == "a rep sees their own figures only, not ben's"


async def test_a_manager_sees_their_teams(api: ReportsApi) -> None:
    spread = (await api.get("/api/reports/consistency", "maria")).json()
    assert [r["rep"] for r in spread["reps"]] == ["ana", "ben", "chloe"]
    assert [t["team"] for t in spread["teams"]] == ["inbound-sales"]
    support = await api.get("/api/reports/attainment", "maria", process="support-case")
    assert support.status_code == 200 and support.json()["total"]["measured"] == 0
    other = await api.get("/api/reports/backlog", "maria", team="support")
    assert other.status_code == 403
    assert "team support is not one you manage" in other.json()["detail"]


async def test_csv_by_suffix_and_by_format(api: ReportsApi) -> None:
    for path, params in (
        ("/api/reports/attainment.csv", {"by": "week"}),
        ("/api/reports/attainment", {"by": "week", "format": "csv"}),
    ):
        response = await api.get(path, "sam", **params)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        assert 'filename="attainment.csv"' in response.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["week"] for r in rows] == [*LABELS, "all"]
        assert [(r["met"], r["goal"]) for r in rows[:2]] == [("3", "0.95"), ("2", "0.95")]


async def test_every_report_answers(api: ReportsApi) -> None:
    for name in ("durations", "outcomes", "funnel", "backlog", "consistency"):
        response = await api.get(f"/api/reports/{name}", "sam")
        assert response.status_code == 200, (name, response.text)
        as_csv = await api.get(f"/api/reports/{name}.csv", "sam")
        assert as_csv.status_code == 200 and as_csv.text.count("\n") >= 2, (name, as_csv.text)
    funnel = (await api.get("/api/reports/funnel", "sam")).json()
    assert funnel["steps"][0] == {
        "step": "call-customer",
        "instances": 9,
        "visits": 10,
        "open": 2,
        "share": 1.0,
    }


async def test_bad_parameters_say_what_is_wrong(api: ReportsApi) -> None:
    both = await api.get("/api/reports/attainment", "sam", weeks=2)
    assert both.status_code == 422
    assert both.json()["detail"] == "give either weeks or since/until, not both"
    unknown = await api.get("/api/reports/attainment", "sam", process="nope")
    assert unknown.status_code == 422
    assert unknown.json()["detail"].startswith("no process 'nope'; known processes:")
    grouping = await api.get("/api/reports/attainment", "sam", by="colour")
    assert grouping.status_code == 422 and "query.by" in grouping.json()["detail"]
    anonymous = await api.http.get("/api/reports/attainment")
    assert anonymous.status_code == 401


async def test_a_period_given_by_its_end_alone_or_out_of_range_is_answered_clearly(
    api: ReportsApi,
) -> None:
    headers = {"Authorization": f"Bearer {api.tokens['sam']}"}
    ending = await api.http.get(
        "/api/reports/attainment",
        params={"process": "quote-follow-up", "until": "2026-11-02T05:00:00Z"},
        headers=headers,
    )
    assert ending.status_code == 200, ending.text
    weeks = ending.json()["scope"]["weeks"]
    # 8 weeks back from Monday 2 November 00:00 in New York: W37 to W44
    assert [weeks[0]["label"], weeks[-1]["label"], len(weeks)] == ["2026-W37", "2026-W44", 8]
    for since, until in (
        ("0001-01-01T03:00:00Z", "0001-02-01T00:00:00Z"),
        (None, "9999-12-31T23:00:00Z"),
        (None, "0001-01-01T00:00:00+14:00"),  # weeks back from it would overflow
    ):
        params = {
            "process": "quote-follow-up",
            "until": until,
            **({"since": since} if since else {}),
        }
        far = await api.http.get("/api/reports/attainment", params=params, headers=headers)
        assert far.status_code == 422, far.text
        assert far.json()["detail"] == "the period must lie between 1970-01-01 and 9000-01-01"
