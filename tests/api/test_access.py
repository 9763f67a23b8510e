"""Who may do what: tokens, a rep's own tasks, a manager's teams, an admin's everything."""

from __future__ import annotations

import pytest

from duly import client as duly_client
from duly.client import TaskRejected
from duly.services.auth import hash_token, issue_token
from duly.store.db import write_session
from duly.store.models import Alert, Task, User
from duly.store.types import utc_now
from workflows.messages import InstanceState, workflow_of

from .conftest import Api, quote


async def test_no_token_or_an_unknown_one_is_401_saying_how_to_get_one(offline_api: Api) -> None:
    bare = await offline_api.http.get("/api/tasks")
    assert bare.status_code == 401
    assert bare.headers["www-authenticate"] == "Bearer"
    assert "duly token USER" in bare.json()["detail"]

    wrong = await offline_api.http.get("/api/tasks", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert "invalid API token" in wrong.json()["detail"]

    basic = await offline_api.http.get("/api/tasks", headers={"Authorization": "Basic YTpi"})
    assert basic.status_code == 401


async def test_tokens_are_stored_hashed_and_a_new_one_replaces_the_old(offline_api: Api) -> None:
    old = offline_api.tokens["ana"]
    user = offline_api.row(User, "ana")
    assert user.token_hash == hash_token(old) and old not in user.token_hash

    with write_session(offline_api.sessions) as session:
        new = issue_token(session=session, user_id="ana")
    assert (
        await offline_api.http.get("/api/me", headers={"Authorization": f"Bearer {old}"})
    ).status_code == 401
    me = await offline_api.http.get("/api/me", headers={"Authorization": f"Bearer {new}"})
    assert me.json() == {
        "id": "ana",
        "name": "Ana Silva",
        "role": "rep",
        "member_of": ["inbound-sales"],
        "manages": [],
    }


async def test_a_rep_cannot_complete_another_reps_task_and_nothing_changes(api: Api) -> None:
    instance = await api.start("quote-follow-up", quote(owner="ana"))
    task = await api.open_task(instance, "call-customer")
    assert task.assignee == "ana"

    refused = await api.post(f"/api/tasks/{task.id}/complete", "ben", {"outcome": "reached"})
    assert refused.status_code == 403
    assert refused.json()["detail"] == (
        f"task {task.id} is assigned to ana: you may see only your own tasks"
    )
    assert api.row(Task, task.id).status == "open"
    state = await api.state(instance, lambda s: s.task is not None)
    assert state.task is not None and state.task.task_id == task.id
    assert not any(h.kind == "complete" for h in state.history)

    # nor see it; a manager of another team neither
    assert (await api.get(f"/api/tasks/{task.id}", "ben")).status_code == 403
    assert (await api.get(f"/api/tasks/{task.id}", "omar")).status_code == 403
    assert (await api.get(f"/api/tasks/{task.id}", "maria")).status_code == 200
    # a manager sees it, but completing stays with the assignee
    manager = await api.post(f"/api/tasks/{task.id}/complete", "maria", {"outcome": "reached"})
    assert manager.status_code == 403
    assert "reassign it to yourself first" in manager.json()["detail"]

    done = await api.post(f"/api/tasks/{task.id}/complete", "ana", {"outcome": "lost"})
    assert done.status_code == 200, done.text


async def test_a_rep_cannot_read_or_ack_another_teams_alerts(offline_api: Api) -> None:
    with write_session(offline_api.sessions) as session:
        for key, recipient, level in (
            ("k1:maria", "maria", "breach"),
            ("k2:ana", "ana", "warning"),
            ("k3:dev", "dev", "warning"),
        ):
            session.add(
                Alert(
                    key=key,
                    event_key=key.split(":")[0],
                    level=level,
                    recipient=recipient,
                    message=f"{level} for {recipient}",
                    created_at=utc_now(),
                )
            )
    ids = {a.recipient: a.id for a in offline_api.rows(Alert)}

    async def listed(user: str) -> set[str]:
        response = await offline_api.get("/api/alerts", user)
        assert response.status_code == 200
        return {a["recipient"] for a in response.json()["items"]}

    assert await listed("dev") == {"dev"}
    assert await listed("ana") == {"ana"}
    assert await listed("omar") == {"dev"}  # support's manager: his team's
    assert await listed("maria") == {"maria", "ana"}
    assert await listed("sam") == {"maria", "ana", "dev"}

    read = await offline_api.get(f"/api/alerts/{ids['ana']}", "dev")
    assert read.status_code == 403
    assert read.json()["detail"] == (
        f"alert {ids['ana']} is addressed to ana, who is not in a team you manage"
    )
    for user in ("dev", "omar", "ben"):
        acked = await offline_api.post(f"/api/alerts/{ids['ana']}/ack", user)
        assert acked.status_code == 403, user
    assert offline_api.row(Alert, ids["ana"]).acknowledged_at is None

    ok = await offline_api.post(f"/api/alerts/{ids['ana']}/ack", "maria")
    assert ok.status_code == 200 and ok.json()["acknowledged_by"] == "maria"


async def test_only_managers_reassign_within_their_teams_and_the_new_assignee_takes_over(
    api: Api,
) -> None:
    instance = await api.start("quote-follow-up", quote(owner="ana"))
    task = await api.open_task(instance, "call-customer")
    path = f"/api/tasks/{task.id}/reassign"

    rep = await api.post(path, "ana", {"to": "ben"})
    assert rep.status_code == 403
    assert rep.json()["detail"] == "only managers and admins may reassign tasks; ask your manager"
    other = await api.post(path, "omar", {"to": "dev"})
    assert other.status_code == 403
    outside = await api.post(path, "maria", {"to": "dev"})
    assert outside.status_code == 403 and "dev is not in a team you manage" in outside.text
    same = await api.post(path, "maria", {"to": "ana"})
    assert same.status_code == 422 and "already assigned to ana" in same.text
    unknown = await api.post(path, "sam", {"to": "nobody"})
    assert unknown.status_code == 422 and "no active user 'nobody'" in unknown.text
    assert api.row(Task, task.id).assignee == "ana"
    # the workflow refuses it too, for callers that skip the API's checks: nothing changes
    with pytest.raises(TaskRejected) as refused:
        await duly_client.reassign_task(api.client, task.id, "ghost", by="sam")
    assert str(refused.value).startswith(
        f"task {task.id} was not reassigned: no active user 'ghost' in org.yaml"
    )
    assert not refused.value.stale
    assert api.row(Task, task.id).assignee == "ana"

    moved = await api.post(path, "maria", {"to": "ben"})
    assert moved.status_code == 200, moved.text
    assert moved.json() == {"task_id": task.id, "assignee": "ben", "previous": "ana"}
    assert api.row(Task, task.id).assignee == "ben"
    handle = api.client.get_workflow_handle(workflow_of(instance, task=False))
    state = await handle.query("state", result_type=InstanceState)
    assert state.task is not None and state.task.assignee == "ben"
    (told,) = api.rows(Alert, Alert.instance_id == instance)
    assert (told.recipient, told.level) == ("ben", "escalation")
    assert told.message.startswith("Reassigned: ") and "(was ana)" in told.message

    assert (
        await api.post(f"/api/tasks/{task.id}/complete", "ana", {"outcome": "lost"})
    ).status_code == 403
    done = await api.post(f"/api/tasks/{task.id}/complete", "ben", {"outcome": "lost"})
    assert done.status_code == 200
    closed = await api.until(
        lambda: (row := api.row(Task, task.id)).status == "completed" and row, "task closed"
    )
    assert (closed.status, closed.closed_by, closed.assignee) == ("completed", "ben", "ben")
    late = await api.post(path, "maria", {"to": "chloe"})
    assert late.status_code == 409
    assert late.json()["detail"] == f"task {task.id} is completed (lost by ben), no longer open"


async def test_only_managers_of_the_processs_team_and_admins_start_instances(
    offline_api: Api,
) -> None:
    body = {"process": "quote-follow-up", "data": quote()}
    rep = await offline_api.post("/api/instances", "ana", body)
    assert rep.status_code == 403 and "only managers and admins" in rep.json()["detail"]
    other = await offline_api.post("/api/instances", "omar", body)
    assert other.status_code == 403
    assert other.json()["detail"] == (
        "quote-follow-up belongs to team inbound-sales, which you do not manage"
    )
