"""The What if page: a manager runs a scenario in the background and sees its chart when done."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx
import pytest
from temporalio.client import Client

from duly.api.app import create_app
from duly.api.web.session import SESSION_COOKIE, open_session
from duly.language.loader import load_definitions
from duly.settings import Settings
from duly.store.crud import sync_org
from duly.store.db import create_all, make_engine, session_factory, write_session

pytestmark = pytest.mark.slow
FOLDER = Path(__file__).resolve().parent / "mm1"


async def test_a_manager_runs_a_scenario_and_the_result_is_kept(tmp_path: Path) -> None:
    definitions = load_definitions(FOLDER)
    settings = Settings(data_dir=tmp_path, definitions=FOLDER)
    db = make_engine(settings.database_url)
    create_all(db)
    sessions = session_factory(db)
    with write_session(sessions) as session:
        sync_org(session=session, org=definitions.org)
        manager, rep = (
            open_session(session=session, user_id="max"),
            open_session(session=session, user_id="lee"),
        )

    async def unreachable() -> Client:
        raise AssertionError("a simulation never reaches the live Temporal")

    app = create_app(settings, definitions, engine=db, client_factory=unreachable)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://duly.test") as http:
        http.cookies.set(SESSION_COOKIE, rep)
        assert (await http.get("/what-if")).status_code == 403
        assert 'href="/what-if"' not in (await http.get("/inbox")).text  # not in a rep's bar
        http.cookies.set(SESSION_COOKIE, manager)
        page = await http.get("/what-if")
        assert page.status_code == 200 and 'value="quick.yaml"' in page.text
        assert 'href="/what-if"' in page.text  # in the navigation
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
        assert csrf is not None
        refused = await http.post(
            "/what-if", data={"csrf": csrf.group(1), "scenario": "../org.yaml", "runs": "1"}
        )
        assert refused.status_code == 422 and "no scenario file" in refused.text
        started = await http.post(
            "/what-if", data={"csrf": csrf.group(1), "scenario": "quick.yaml", "runs": "1"}
        )
        assert started.status_code == 303
        job = started.headers["location"]
        running = await http.get(job)
        assert running.status_code == 200
        deadline = time.monotonic() + 300
        while 'data-status="running"' in running.text and time.monotonic() < deadline:
            assert running.headers.get("refresh") == "3"
            await asyncio.sleep(0.5)  # the run goes on in the app's event loop meanwhile
            running = await http.get(job)
        assert 'data-status="done"' in running.text, running.text
        assert "<svg" in running.text and "respond" in running.text
        assert "lee" in running.text  # the per-rep table
        listing = await http.get("/what-if")
        assert job in listing.text  # kept under the data folder, listed
    assert list((tmp_path / "simulations").glob("*.json"))
    db.dispose()
