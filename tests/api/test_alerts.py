"""A manager sees a breach as it happens and acknowledges it; a rep sees only their own alerts."""

from __future__ import annotations

from datetime import timedelta

from duly.store.db import write_session
from duly.store.models import Alert
from duly.store.types import utc_now

from .conftest import Api, quote


async def test_a_manager_sees_the_breach_of_a_reps_task_and_acknowledges_it(api: Api) -> None:
    monday = await api.next_monday(10)
    await api.sleep_until(monday)
    instance = await api.start("quote-follow-up", quote(owner="ana"))
    await api.open_task(instance, "call-customer")

    # 2 business days: due Wednesday 10:00; 75% (warning) Tuesday 14:00; 150% not before Thursday
    await api.sleep_until(monday + timedelta(days=2, seconds=30))
    await api.until(
        lambda: len(api.rows(Alert, Alert.instance_id == instance)) == 2, "warning and breach"
    )

    listed = (await api.get("/api/alerts", "maria")).json()
    (breach,) = [
        a for a in listed["items"] if a["instance_id"] == instance and a["level"] == "breach"
    ]
    assert breach["recipient"] == "maria"
    assert breach["message"].startswith("Breach: 'Call Lee Park about quote ")
    (warning,) = [a for a in listed["items"] if a["level"] == "warning"]
    assert warning["recipient"] == "ana"  # her team's rep: the manager sees it too

    ana = (await api.get("/api/alerts", "ana")).json()["items"]
    assert [a["level"] for a in ana] == ["warning"]
    assert (await api.get(f"/api/alerts/{breach['id']}", "ana")).status_code == 403
    assert (await api.post(f"/api/alerts/{breach['id']}/ack", "omar")).status_code == 403

    acked = await api.post(f"/api/alerts/{breach['id']}/ack", "maria")
    assert acked.status_code == 200
    assert acked.json()["acknowledged_by"] == "maria"
    assert acked.json()["acknowledged_at"] is not None
    again = await api.post(f"/api/alerts/{breach['id']}/ack", "maria")
    assert again.json()["acknowledged_at"] == acked.json()["acknowledged_at"]

    still_open = (await api.get("/api/alerts", "maria")).json()["items"]
    assert breach["id"] not in [a["id"] for a in still_open]
    done = (await api.get("/api/alerts", "maria", params={"state": "acknowledged"})).json()
    assert [a["id"] for a in done["items"]] == [breach["id"]]
    breaches = await api.get("/api/alerts", "maria", params={"state": "all", "level": "breach"})
    assert [a["id"] for a in breaches.json()["items"]] == [breach["id"]]


async def test_an_unknown_alert_is_404(offline_api: Api) -> None:
    response = await offline_api.post("/api/alerts/999/ack", "maria")
    assert response.status_code == 404
    assert response.json() == {"detail": "no alert 999"}
    bad = await offline_api.post("/api/alerts/abc/ack", "maria")
    assert bad.status_code == 422
    assert "path.alert_id" in bad.json()["detail"]


async def test_alerts_filter_by_every_level_a_monitor_writes(offline_api: Api) -> None:
    with write_session(offline_api.sessions) as session:
        for key, level in (("m:omar:up", "threshold"), ("m:omar:down", "recovery")):
            session.add(
                Alert(
                    key=key,
                    event_key=key.rsplit(":", 1)[0],
                    level=level,
                    recipient="omar",
                    message=f"support-backlog {level}",
                    created_at=utc_now(),
                )
            )
    for level in ("threshold", "recovery"):
        listed = await offline_api.get("/api/alerts", "omar", params={"level": level})
        assert listed.status_code == 200
        assert [a["message"] for a in listed.json()["items"]] == [f"support-backlog {level}"]
    unknown = await offline_api.get("/api/alerts", "omar", params={"level": "panic"})
    assert unknown.status_code == 422
    assert "query.level" in unknown.json()["detail"]


async def test_alerts_of_a_completed_task_are_resolved_and_leave_the_open_list(api: Api) -> None:
    monday = await api.next_monday(10)
    await api.sleep_until(monday)
    instance = await api.start("quote-follow-up", quote(owner="ana"))
    task = await api.open_task(instance, "call-customer")
    # due Wednesday 10:00: the warning (ana) and the breach (maria) are raised, then ana calls
    await api.sleep_until(monday + timedelta(days=2, hours=3))
    await api.until(lambda: len(api.rows(Alert, Alert.instance_id == instance)) == 2, "alerts")
    assert {a.task_id for a in api.rows(Alert, Alert.instance_id == instance)} == {task.id}
    open_before = (await api.get("/api/alerts", "maria")).json()
    assert {a["level"] for a in open_before["items"]} == {"warning", "breach"}

    done = await api.post(f"/api/tasks/{task.id}/complete", "ana", {"outcome": "lost"})
    assert done.status_code == 200, done.text
    await api.until(
        lambda: all(a.resolved_at for a in api.rows(Alert, Alert.instance_id == instance)),
        "alerts resolved with their task",
    )

    still_open = (await api.get("/api/alerts", "maria")).json()
    assert still_open["total"] == 0 and still_open["items"] == []
    resolved = (await api.get("/api/alerts", "maria", params={"state": "resolved"})).json()
    assert {a["level"] for a in resolved["items"]} == {"warning", "breach"}
    breach = next(a for a in resolved["items"] if a["level"] == "breach")
    assert breach["resolved_by"] == "ana"
    assert breach["resolution"].startswith("completed ") and breach["resolution"].endswith(
        " late by ana"
    )
    assert breach["late_seconds"] > 2 * 3600  # completed about 3 h after Wednesday 10:00
    assert breach["acknowledged_at"] is None  # resolved is not acknowledged: both are kept
    everything = (await api.get("/api/alerts", "maria", params={"state": "all"})).json()
    assert everything["total"] == 2


async def test_a_reassigned_tasks_alerts_are_resolved_and_the_new_holders_stays_open(
    api: Api,
) -> None:
    monday = await api.next_monday(10)
    await api.sleep_until(monday)
    instance = await api.start("quote-follow-up", quote(owner="ana"))
    task = await api.open_task(instance, "call-customer")
    await api.sleep_until(monday + timedelta(days=2, minutes=5))
    await api.until(lambda: len(api.rows(Alert, Alert.instance_id == instance)) == 2, "alerts")

    moved = await api.post(f"/api/tasks/{task.id}/reassign", "maria", {"to": "ben"})
    assert moved.status_code == 200, moved.text
    await api.until(lambda: len(api.rows(Alert, Alert.instance_id == instance)) == 3, "handover")

    rows = {a.level: a for a in api.rows(Alert, Alert.instance_id == instance)}
    for level in ("warning", "breach"):
        assert rows[level].resolved_at is not None
        assert rows[level].resolved_by == "maria"
        assert rows[level].resolution.startswith("reassigned to ben (was ana), ")
    assert rows["escalation"].recipient == "ben" and rows["escalation"].resolved_at is None
    bens = (await api.get("/api/alerts", "ben")).json()["items"]
    assert [a["level"] for a in bens] == ["escalation"]
    marias = (await api.get("/api/alerts", "maria")).json()["items"]
    assert [a["level"] for a in marias] == ["escalation"]  # ben's, her team's: needs action


async def test_the_alert_state_filter_is_checked(offline_api: Api) -> None:
    bad = await offline_api.get("/api/alerts", "maria", params={"state": "closed"})
    assert bad.status_code == 422
    assert "resolved" in bad.text
