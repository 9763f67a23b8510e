"""An event's occurred time is checked at the door: an offset is required, the future refused."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

from typer.testing import CliRunner

from duly.cli import app
from duly.store.models import InboundEvent

from .conftest import Api, lead, quote


def sent(occurred_at: str) -> dict[str, object]:
    return {
        "id": f"evt-{uuid.uuid4()}",
        "type": "quote.sent",
        "data": quote("Q-time"),
        "occurred_at": occurred_at,
    }


async def test_an_event_from_the_future_is_refused_with_the_reason(offline_api: Api) -> None:
    ahead = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    response = await offline_api.event(sent(ahead))
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert "body.occurred_at" in detail
    assert "in the future" in detail and "clock skew" in detail
    assert offline_api.rows(InboundEvent) == []


async def test_an_occurred_at_without_an_offset_is_refused(offline_api: Api) -> None:
    response = await offline_api.event(sent("2026-12-01T14:05:00"))
    assert response.status_code == 422
    assert "has no offset" in response.json()["detail"]
    assert offline_api.rows(InboundEvent) == []


def test_the_cli_refuses_a_naive_or_future_occurred_at_before_sending_anything() -> None:
    runner = CliRunner()
    naive = runner.invoke(app, ["event", "quote.sent", "--occurred-at", "2026-12-01T14:05:00"])
    assert naive.exit_code == 1
    assert "has no offset" in naive.output
    ahead = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    future = runner.invoke(app, ["event", "quote.sent", "--occurred-at", ahead])
    assert future.exit_code == 1
    assert "in the future" in future.output
    garbage = runner.invoke(app, ["event", "quote.sent", "--occurred-at", "yesterday"])
    assert garbage.exit_code == 1
    assert "--occurred-at 'yesterday' is refused" in garbage.output


async def test_a_late_event_opens_its_task_when_it_happened(api: Api) -> None:
    assert api.env is not None
    now = min(datetime.now(UTC), await api.env.get_current_time())
    occurred = (now - timedelta(minutes=50)).replace(microsecond=0)
    event = {
        "id": f"evt-{uuid.uuid4()}",
        "type": "lead.created",
        "data": lead(),
        "occurred_at": occurred.astimezone(timezone(timedelta(hours=-5))).isoformat(),
    }
    response = await api.event(event)
    assert response.status_code == 200, response.text
    [instance] = response.json()["instances"]

    task = await api.open_task(instance, "first-call")
    assert task.opened_at == occurred
