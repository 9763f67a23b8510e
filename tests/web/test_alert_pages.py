"""The Alerts page: alerts whose task is done or handed on sit under Resolved, apart from the
ones that still need action, and the navigation's badge counts only the latter."""

from __future__ import annotations

import re

from api.conftest import Api

from duly.store.db import write_session
from duly.store.models import Alert
from duly.store.types import utc_now
from web.test_pages import sign_in


def add_alerts(api: Api) -> None:
    now = utc_now()
    with write_session(api.sessions) as session:
        session.add(
            Alert(
                key="k/1:maria", event_key="k/1", level="breach", recipient="maria",
                message="Breach: still late", created_at=now,
            )
        )  # fmt: skip
        for n in range(3):
            session.add(
                Alert(
                    key=f"k/done{n}:maria", event_key=f"k/done{n}", level="breach",
                    recipient="maria", message=f"Breach: closed long ago {n}", created_at=now,
                    task_id=f"t/{n}", resolved_at=now, resolved_by="chloe",
                    resolution="completed 2 h late by chloe", late_seconds=7200,
                )
            )  # fmt: skip


def badge(page_text: str) -> str:
    found = re.search(r'id="nav-alert-count"[^>]*>(\d+)<', page_text)
    assert found is not None
    return found.group(1)


async def test_resolved_alerts_are_shown_apart_and_the_badge_counts_only_open_ones(
    offline_api: Api,
) -> None:
    add_alerts(offline_api)
    await sign_in(offline_api, "maria")
    needs_action = await offline_api.http.get("/alerts")
    assert needs_action.status_code == 200
    assert badge(needs_action.text) == "1"
    assert "Breach: still late" in needs_action.text
    assert "closed long ago" not in needs_action.text

    resolved = await offline_api.http.get("/alerts?state=resolved")
    assert resolved.text.count("Resolved: completed 2 h late by chloe") == 3
    assert "Breach: still late" not in resolved.text
    assert badge(resolved.text) == "1"
    live = (await offline_api.http.get("/alerts/live?state=open")).json()
    assert (live["total"], live["open"]) == (1, 1)
