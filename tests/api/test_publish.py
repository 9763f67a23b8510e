"""One published set: a publish reaches the API and the CLI of running duly, without a restart."""

from __future__ import annotations

import asyncio
import re
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import structlog
from sqlmodel import select
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from typer.testing import CliRunner

from activities.process import ProcessActivities
from duly import published
from duly.api.app import create_app
from duly.cli import app as cli_app
from duly.language.loader import load_definitions
from duly.settings import Settings
from duly.store.crud import VersionConflicts
from duly.store.db import session_factory, write_session
from duly.store.models import Definition, InboundEvent, Instance, PublishedSet, UnheardEvent
from workflows.contracts import ProcessContract, implementations
from workflows.process import ProcessWorkflow
from workflows.sandbox import workflow_runner

from .conftest import SECRET, Api, end_everything, make_store, quote

ROOT = Path(__file__).resolve().parents[2]
QUOTE = "processes/quote-follow-up.yaml"


@pytest.fixture(autouse=True)
def keep_logging() -> Iterator[None]:
    """CLI commands point structlog at the runner's stderr, closed after each: restore it."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A copy of the shipped definitions an admin edits."""
    target = tmp_path / "definitions"
    shutil.copytree(ROOT / "definitions", target)
    return target


def edit_quote(folder: Path, *, version: int, within: str) -> None:
    """Change the quote process's first SLA, with the version given."""
    path = folder / QUOTE
    text = path.read_text()
    text = text.replace("version: 1 ", f"version: {version} ", 1)
    text = text.replace("within: 2 business days", f"within: {within}", 1)
    path.write_text(text)


@pytest_asyncio.fixture(loop_scope="session")
async def live(
    time_skipping_env: WorkflowEnvironment, folder: Path, task_queue: str, tmp_path: Path
) -> AsyncIterator[tuple[Api, Settings]]:
    """The API and a worker on the folder, published as revision 1 as `duly up` does."""
    definitions = load_definitions(folder)
    db, sessions, tokens = make_store(tmp_path, definitions)
    settings = Settings(
        events_secret=SECRET,
        task_queue=task_queue,
        definitions=folder,
        database_url=f"sqlite:///{tmp_path / 'duly.db'}",
        data_dir=tmp_path,
        temporal_address=time_skipping_env.client.service_client.config.target_host,
    )
    with write_session(sessions) as session:
        assert published.publish(session, folder).revision == 1
    app = create_app(settings, definitions, engine=db, client=time_skipping_env.client)
    with ThreadPoolExecutor(max_workers=8) as executor:
        async with Worker(
            time_skipping_env.client,
            task_queue=task_queue,
            workflows=[ProcessWorkflow],
            activities=implementations([ProcessContract], [ProcessActivities(sessions, settings)]),
            activity_executor=executor,
            workflow_runner=workflow_runner(),
        ):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://duly.test") as http:
                yield Api(http, sessions, definitions, time_skipping_env, tokens), settings
            # what is published at the end knows every process that ran
            now = published.PublishedDefinitions(sessions).current()
            await end_everything(time_skipping_env.client, sessions, now)
    db.dispose()


async def version_of(api: Api, instance_id: str) -> int:
    """The version an instance runs, once the worker has written its row."""
    row = await api.until(lambda: api.row(Instance, instance_id), f"{instance_id}'s row")
    version: int = row.version
    return version


def cli(settings: Settings, *args: str) -> Any:
    env = {
        "DULY_DATABASE_URL": settings.database_url,
        "DULY_DEFINITIONS": str(settings.definitions),
        "DULY_TEMPORAL_ADDRESS": settings.temporal_address,
        "DULY_TASK_QUEUE": settings.task_queue,
    }
    return CliRunner().invoke(cli_app, list(args), env=env)


async def test_a_publish_reaches_the_api_and_the_cli_without_a_restart(
    live: tuple[Api, Settings], folder: Path
) -> None:
    api, settings = live
    before = await api.start("quote-follow-up", quote("Q-PUB-1"))
    assert await version_of(api, before) == 1

    edit_quote(folder, version=2, within="1 business day")
    # not published yet: the API and the CLI both still start version 1
    event = {"id": f"evt-{uuid.uuid4()}", "type": "quote.sent", "data": quote("Q-PUB-2")}
    response = await api.event(event)
    assert response.status_code == 200, response.text
    assert await version_of(api, response.json()["instances"][0]) == 1

    plan = await api.get("/api/publish", "sam")
    assert plan.status_code == 200, plan.text
    (change,) = plan.json()["processes"]
    assert (change["process"], change["before"], change["after"]) == ("quote-follow-up", 1, 2)
    assert change["slas"] == ["call-customer: 2 business days, 3 rungs -> 1 business day, 3 rungs"]
    assert change["steps_changed"] == ["call-customer"]
    assert change["running"] == {"1": 2}  # both running instances keep version 1
    assert (await api.post("/api/publish", "ana")).status_code == 403  # admins only

    done = await api.post("/api/publish", "sam")
    assert done.status_code == 200, done.text
    assert (done.json()["published"], done.json()["created"]) == (2, True)

    after = await api.start("quote-follow-up", quote("Q-PUB-3"))
    assert await version_of(api, after) == 2
    event = {"id": f"evt-{uuid.uuid4()}", "type": "quote.sent", "data": quote("Q-PUB-4")}
    response = await api.event(event)
    assert await version_of(api, response.json()["instances"][0]) == 2
    assert await version_of(api, before) == 1  # a running instance keeps its version

    started = await asyncio.to_thread(
        cli, settings, "start", "quote-follow-up", "--data", '{"quote": {"id": "Q-PUB-5"}}'
    )
    assert started.exit_code == 0, started.output
    instance_id = started.stdout.split()[-1]
    assert await version_of(api, instance_id) == 2

    # publishing the same folder again writes no new revision
    again = await api.post("/api/publish", "sam")
    assert (again.json()["published"], again.json()["created"]) == (2, False)


async def test_a_refused_publish_changes_nothing(live: tuple[Api, Settings], folder: Path) -> None:
    api, settings = live
    edit_quote(folder, version=1, within="3 business days")  # changed, version not raised
    refused = await api.post("/api/publish", "sam")
    assert refused.status_code == 409, refused.text
    assert (
        "quote-follow-up version 1 is already stored with different content"
        in (refused.json()["detail"])
    )
    with api.sessions() as session:
        assert [r.revision for r in session.exec(select(PublishedSet))] == [1]
    started = await api.start("quote-follow-up", quote("Q-REFUSED"))
    row = await api.until(lambda: api.row(Instance, started), "the instance row")
    with api.sessions() as session:
        stored = session.exec(select(Definition).where(Definition.process == "quote-follow-up"))
        assert [d.hash for d in stored] == [row.hash]

    # the CLI refuses the same way, and says so; validate warns about the file
    out = await asyncio.to_thread(cli, settings, "publish", "--definitions", str(folder))
    assert out.exit_code == 1
    assert "nothing was published" in out.output
    checked = await asyncio.to_thread(cli, settings, "validate", "--definitions", str(folder))
    assert checked.exit_code == 0, checked.output
    assert "warning: " in checked.output and "raise `version:`" in checked.output

    (folder / "processes" / "broken.yaml").write_text("process: broken\nversion: 1\n")
    invalid = await api.post("/api/publish", "sam")
    assert invalid.status_code == 422
    assert "broken.yaml:" in invalid.json()["detail"]


def test_publish_is_all_or_nothing_in_the_store(engine: Any, folder: Path) -> None:
    sessions = session_factory(engine)
    with write_session(sessions) as session:
        published.publish(session, folder)
    lead = folder / "processes" / "lead-follow-up.yaml"
    version = int(re.search(r"^version: (\d+)$", lead.read_text(), re.M).group(1))  # type: ignore[union-attr]
    lead.write_text(lead.read_text().replace(f"version: {version}", f"version: {version + 1}", 1))
    edit_quote(folder, version=1, within="5 business days")
    with pytest.raises(VersionConflicts), write_session(sessions) as session:
        published.publish(session, folder)
    with sessions() as session:
        assert published.latest_revision(session) == 1
        versions = session.exec(
            select(Definition.version).where(Definition.process == "lead-follow-up")
        ).all()
        # the valid half of the refused publish (the lead's new version) was not kept
        assert list(versions) == [version]
    live = published.PublishedDefinitions(sessions)
    assert live.current().processes["lead-follow-up"].version == version


def unheard_count(event_type: str) -> float:
    from duly.unheard import UNHEARD_EVENTS

    value: float = UNHEARD_EVENTS.labels(event_type)._value.get()
    return value


async def test_an_event_no_process_listens_to_is_kept_and_replayed_once_one_does(
    live: tuple[Api, Settings], folder: Path
) -> None:
    api, settings = live
    kind = f"partner.referral{uuid.uuid4().hex[:6]}"
    counted_before = unheard_count(kind)
    event = {"id": f"evt-{uuid.uuid4()}", "type": kind, "data": quote("Q-UNHEARD")}
    first = await api.event(event)
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "unheard"
    assert f"no process listens to {kind}" in first.json()["detail"]
    again = await api.event(event)  # the id was not consumed: not a duplicate
    assert (again.status_code, again.json()["status"]) == (202, "unheard")
    assert api.row(InboundEvent, event["id"]) is None
    assert unheard_count(kind) == counted_before + 2
    metrics = await api.http.get("/metrics")
    assert f'duly_unheard_events_total{{type="{kind}"}}' in metrics.text

    listed = await api.get("/api/unheard", "sam")
    (row,) = [r for r in listed.json() if r["id"] == event["id"]]
    assert (row["times"], row["heard_now"], row["replayed_at"]) == (2, False, None)
    assert (await api.get("/api/unheard", "ana")).status_code == 403
    nothing = await api.post("/api/unheard/replay", "sam")
    assert nothing.json() == []  # still nobody listens: nothing is replayed

    # `duly event` answers the same way and keeps it too
    by_cli = await asyncio.to_thread(
        cli,
        settings,
        "event",
        kind,
        "--id",
        "evt-cli-unheard",
        "--data",
        '{"quote": {"id": "Q-C"}}',
    )
    assert by_cli.exit_code == 0, by_cli.output
    assert f"evt-cli-unheard: no process listens to {kind}" in by_cli.output
    assert api.row(UnheardEvent, "evt-cli-unheard") is not None

    # an admin adds a process that starts on it, publishes, and replays
    text = (folder / QUOTE).read_text()
    text = text.replace("process: quote-follow-up", "process: partner-referral", 1)
    text = text.replace("event: quote.sent", f"event: {kind}", 1)
    (folder / "processes" / "partner-referral.yaml").write_text(text)
    assert (await api.post("/api/publish", "sam")).status_code == 200
    listed = await api.get("/api/unheard", "sam", params={"pending": True})
    assert [r["heard_now"] for r in listed.json() if r["id"] == event["id"]] == [True]

    replayed = await api.post("/api/unheard/replay", "sam")
    assert replayed.status_code == 200, replayed.text
    items = {item["event_id"]: item for item in replayed.json()}
    assert sorted(items) == sorted([event["id"], "evt-cli-unheard"])
    item = items[event["id"]]
    assert item["status"] == "accepted"
    (instance_id,) = item["instances"]
    assert instance_id.startswith("partner-referral/Q-UNHEARD/")
    await api.until(lambda: api.row(Instance, instance_id), "the replayed instance")
    assert (await api.post("/api/unheard/replay", "sam")).json() == []  # replayed once
    resent = await api.event(event)
    assert (resent.status_code, resent.json()["status"]) == (200, "duplicate")

    # a type no process names that reaches a live instance (a data update) is delivered
    update = {"id": f"evt-{uuid.uuid4()}", "type": "quote.touched", "data": quote("Q-UNHEARD")}
    touched = await api.event(update)
    assert (touched.status_code, touched.json()["instances"]) == (200, [instance_id])

    listing = await asyncio.to_thread(cli, settings, "unheard")
    assert listing.exit_code == 0, listing.output
    assert f"{event['id']}  {kind}  x2" in listing.output and "replayed accepted" in listing.output
