"""Instances: start, list with filters, one with its live state and history."""

from __future__ import annotations

from duly.store.models import Instance

from .conftest import Api, quote


async def test_start_list_and_show_an_instance_with_its_live_state_and_history(api: Api) -> None:
    data = quote(owner="ana")
    number = data["quote"]["id"]
    instance = await api.start("quote-follow-up", data, user="maria")
    assert instance.startswith(f"quote-follow-up/{number}/")
    task = await api.open_task(instance)
    await api.state(instance, lambda s: s.task is not None)

    listed = await api.get(
        "/api/instances", "maria", params={"process": "quote-follow-up", "key": number}
    )
    assert [i["id"] for i in listed.json()["items"]] == [instance]
    assert (await api.get("/api/instances", "maria", params={"status": "failed"})).json()[
        "items"
    ] == []

    shown = await api.get(f"/api/instances/{instance}", "ana")
    assert shown.status_code == 200, shown.text
    detail = shown.json()
    assert detail["instance"]["status"] == "running"
    assert detail["state_error"] is None
    assert detail["state"]["step"] == "call-customer"
    assert detail["state"]["task"]["task_id"] == task.id
    assert detail["state"]["next_rung"]["action"] == "notify assignee"
    assert [t["id"] for t in detail["tasks"]] == [task.id]
    # the clock's start is in the live state; the database gets it when the step ends
    assert [e["kind"] for e in detail["state"]["sla_events"]] == ["start"]

    await api.post(f"/api/tasks/{task.id}/complete", "ana", {"outcome": "lost"})
    await api.until(lambda: api.row(Instance, instance).status == "completed")
    ended = (await api.get(f"/api/instances/{instance}", "ana")).json()
    assert ended["state"] is None and ended["instance"]["result"] == "lost"
    assert [(f["step"], f["outcome"], f["sla_met"]) for f in ended["facts"]] == [
        ("call-customer", "lost", True),
        ("lost", "lost", None),
    ]
    assert [e["kind"] for e in ended["sla_events"]] == ["start", "stop"]


async def test_instances_are_shown_only_to_who_has_a_part_in_them(api: Api) -> None:
    instance = await api.start("quote-follow-up", quote(owner="ana"))
    await api.open_task(instance)
    for user, status in (("ana", 200), ("maria", 200), ("sam", 200), ("ben", 403), ("dev", 403)):
        response = await api.get(f"/api/instances/{instance}", user)
        assert response.status_code == status, user
    assert (await api.get("/api/instances", "dev")).json()["total"] == 0
    assert (await api.get("/api/instances", "omar")).json()["total"] == 0
    missing = await api.get("/api/instances/quote-follow-up/none/x", "sam")
    assert missing.status_code == 404


async def test_starting_is_refused_clearly(api: Api) -> None:
    unknown = await api.post("/api/instances", "sam", {"process": "nope", "data": {}})
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == (
        "no process 'nope' (known: lead-follow-up, quote-follow-up, support-case)"
    )
    keyless = await api.post("/api/instances", "sam", {"process": "quote-follow-up", "data": {}})
    assert keyless.status_code == 422
    assert "the business key '{{ quote.id }}' is empty" in keyless.json()["detail"]

    data = quote(owner="ben")
    first = await api.start("quote-follow-up", data)
    await api.open_task(first)
    twice = await api.post("/api/instances", "sam", {"process": "quote-follow-up", "data": data})
    assert twice.status_code == 409
    assert "already has a running instance" in twice.json()["detail"]


async def test_an_instance_is_addressed_by_its_id_or_by_its_keys_latest_instance(api: Api) -> None:
    data = quote(owner="ana")
    number = data["quote"]["id"]
    first = await api.start("quote-follow-up", data)
    task = await api.open_task(first)
    by_key = await api.get(f"/api/instances/quote-follow-up/{number}", "ana")
    assert by_key.status_code == 200, by_key.text
    assert by_key.json()["instance"]["id"] == first
    assert by_key.json()["state"]["task"]["task_id"] == task.id

    await api.post(f"/api/tasks/{task.id}/complete", "ana", {"outcome": "lost"})
    await api.until(lambda: api.row(Instance, first).status == "completed")
    again = await api.start("quote-follow-up", data)
    await api.open_task(again)
    latest = (await api.get(f"/api/instances/quote-follow-up/{number}", "ana")).json()
    assert latest["instance"]["id"] == again and latest["state"]["instance_id"] == again
    earlier = (await api.get(f"/api/instances/{first}", "ana")).json()
    assert earlier["instance"]["status"] == "completed" and earlier["state"] is None

    for text in ("quote-follow-up", "quote-follow-up//x"):
        refused = await api.get(f"/api/instances/{text}", "ana")
        assert refused.status_code == 404
        assert "is not an instance: give its id" in refused.json()["detail"]
