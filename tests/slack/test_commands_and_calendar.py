"""`/duly` slash commands, and the per-user calendar feed (parsed back with icalendar)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import pytest
import structlog
from api.conftest import lead, quote
from icalendar import Calendar
from typer.testing import CliRunner

from duly.calendar_feed import ensure_feed, feed_url
from duly.cli import app
from duly.store.db import write_session
from duly.store.models import Alert
from slack.conftest import SlackWorld

ROOT = Path(__file__).resolve().parents[2]


async def test_duly_tasks_lists_my_open_tasks_soonest_due_first(world: SlackWorld) -> None:
    later = await world.api.start("lead-follow-up", lead(owner="ben", source="referral"))
    sooner = await world.api.start("lead-follow-up", lead(owner="ben"))
    await world.api.open_task(later, "qualify")
    await world.api.open_task(sooner, "first-call")

    text = await world.command("ben", "tasks")
    assert text.startswith("*Your open tasks* (2, soonest due first):")
    lines = text.splitlines()[1:]
    assert "Call new lead Kim Lee (Acme)" in lines[0]  # 1 business hour
    assert lines[0].startswith("• Call new lead Kim Lee (Acme): due ")  # 1 business hour
    assert lines[1].startswith("• Qualify Kim Lee (Acme)")  # 4 business hours
    for line in lines:  # the time left depends on when in the working day the test runs
        assert re.search(r", [0-9dhms ]+ business time left \(lead-follow-up\)$", line), line


async def test_duly_alerts_and_report_answer_as_the_slack_user(world: SlackWorld) -> None:
    with write_session(world.api.sessions) as session:
        session.add(
            Alert(
                key="slack-test/breach:maria",
                event_key="slack-test/breach",
                level="breach",
                recipient="maria",
                message="first-call is past due",
            )
        )
    alerts = await world.command("maria", "alerts")
    assert "breach: first-call is past due (for maria)" in alerts
    assert await world.command("ana", "alerts") == "No open alerts."

    mine = await world.command("ana", "report")
    assert mine.startswith("*Your SLA attainment this week*:")
    team = await world.command("maria", "report")
    assert team.startswith("*Your teams' SLA attainment this week*:")

    assert "/duly tasks" in await world.command("ana", "")
    stranger = await world.command("U0NOBODY", "tasks")
    assert "not linked to a duly user" in stranger and "slack_id: U0NOBODY" in stranger


async def test_the_calendar_feed_shows_open_tasks_at_their_due_time(world: SlackWorld) -> None:
    instance = await world.api.start("quote-follow-up", quote(owner="chloe"))
    task = await world.api.open_task(instance)
    settings = world.deliverer.context.settings
    with write_session(world.api.sessions) as session:
        generation = ensure_feed(session=session, user_id="chloe")
    path = urlsplit(feed_url(settings, "chloe", generation)).path

    response = await world.http.get(path)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/calendar")
    calendar = Calendar.from_ical(response.content)
    (event,) = calendar.walk("VEVENT")
    assert task.due_at is not None
    # iCalendar times are whole seconds
    assert event.decoded("dtstart") == task.due_at.replace(microsecond=0)
    local_due = task.due_at.astimezone(ZoneInfo("America/New_York"))  # the calendar's zone
    assert str(event["summary"]) == f"{task.title}, due {local_due:%H:%M}"
    assert str(event["summary"]).startswith("Call Lee Park about quote")
    assert str(event["uid"]) == f"{task.id}@duly"

    # another secret, or another user's path, is nobody's feed
    assert (await world.http.get(path.replace("/chloe/", "/ana/"))).status_code == 404
    assert (await world.http.get(path[:-10] + "0" * 6 + ".ics")).status_code == 404

    with write_session(world.api.sessions) as session:
        rotated = ensure_feed(session=session, user_id="chloe", rotate=True)
    assert (await world.http.get(path)).status_code == 404
    new_path = urlsplit(feed_url(settings, "chloe", rotated)).path
    assert new_path != path
    assert (await world.http.get(new_path)).status_code == 200


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """Commands point structlog at the runner's stderr, closed after each: restore it."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def test_calendar_url_prints_the_same_url_until_rotated(tmp_path: Path, keep_logging: None) -> None:
    env = {
        "DULY_DATABASE_URL": f"sqlite:///{tmp_path / 'duly.db'}",
        "DULY_DEFINITIONS": str(ROOT / "definitions"),
        "DULY_EVENTS_SECRET": "calendar-test-secret-" + "x" * 20,
        "DULY_PUBLIC_URL": "https://duly.example.com",
    }
    runner = CliRunner()
    first = runner.invoke(app, ["calendar-url", "ana"], env=env)
    assert first.exit_code == 0, first.output
    url = first.stdout.strip()
    assert url.startswith("https://duly.example.com/calendar/ana/") and url.endswith(".ics")
    assert runner.invoke(app, ["calendar-url", "ana"], env=env).stdout.strip() == url

    rotated = runner.invoke(app, ["calendar-url", "ana", "--rotate"], env=env)
    assert rotated.exit_code == 0
    assert rotated.stdout.strip() != url
    again = runner.invoke(app, ["calendar-url", "ana"], env=env).stdout.strip()
    assert again == rotated.stdout.strip()

    unknown = runner.invoke(app, ["calendar-url", "nobody"], env=env)
    assert unknown.exit_code == 1
    assert "no active user 'nobody'" in unknown.output
