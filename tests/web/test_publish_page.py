"""The admins' publish page: the plan, a button that publishes all or nothing, unheard events."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest_asyncio
from api.conftest import Api, make_store
from temporalio.client import Client

from duly import published
from duly.api.app import create_app
from duly.language.loader import load_definitions
from duly.settings import Settings
from duly.store.db import write_session

from .test_pages import csrf_of, signed_in_as

ROOT = Path(__file__).resolve().parents[2]
QUOTE = "processes/quote-follow-up.yaml"


@pytest_asyncio.fixture(loop_scope="session")
async def site(tmp_path: Path) -> AsyncIterator[tuple[Api, Path]]:
    """The web app on a copy of the shipped folder, published as revision 1; no Temporal."""

    async def unreachable() -> Client:
        raise AssertionError("publishing never reaches Temporal")

    folder = tmp_path / "definitions"
    shutil.copytree(ROOT / "definitions", folder)
    definitions = load_definitions(folder)
    db, sessions, tokens = make_store(tmp_path, definitions)
    with write_session(sessions) as session:
        published.publish(session, folder)
    settings = Settings(definitions=folder, data_dir=tmp_path)
    app = create_app(settings, definitions, engine=db, client_factory=unreachable)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://duly.test") as http:
        yield Api(http, sessions, definitions, None, tokens), folder
    db.dispose()


def edit(folder: Path, version: str, within: str, was: str = "2 business days") -> None:
    path = folder / QUOTE
    text = path.read_text().replace("version: 1 ", f"version: {version} ", 1)
    path.write_text(text.replace(f"within: {was}", f"within: {within}", 1))


async def test_an_admin_sees_the_plan_and_publishes_it(site: tuple[Api, Path]) -> None:
    api, folder = site
    signed_in_as(api, "ana")
    assert (await api.http.get("/admin/publish")).status_code == 403  # reps do not publish

    signed_in_as(api, "sam")
    page = await api.http.get("/admin/publish")
    assert page.status_code == 200
    assert "nothing to publish: revision 1 is this folder" in page.text
    assert "Publish all of it" not in page.text

    edit(folder, "2", "1 business day")
    page = await api.http.get("/admin/publish")
    assert "quote-follow-up: v1 -&gt; v2" in page.text
    assert "sla call-customer: 2 business days, 3 rungs -&gt; 1 business day" in page.text
    form = {"csrf": csrf_of(page)}
    assert (await api.http.post("/admin/publish", data={"csrf": "0" * 64})).status_code == 403
    done = await api.http.post("/admin/publish", data=form)
    assert (done.status_code, done.headers["location"]) == (303, "/admin/publish?published=2")
    with api.sessions() as session:
        assert published.latest_revision(session) == 2
    listing = await api.get("/api/definitions/quote-follow-up", "sam")
    assert listing.json()["version"] == 2  # the API serves it at once

    edit(folder, "2", "3 business days", was="1 business day")  # changed again, version not raised
    refused = await api.http.post("/admin/publish", data=form)
    assert refused.status_code == 409
    assert "Nothing was published" in refused.text and "raise `version:`" in refused.text
    with api.sessions() as session:
        assert published.latest_revision(session) == 2
