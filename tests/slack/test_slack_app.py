"""The Slack app end to end: DMs with buttons, modals, acknowledging, stale clicks, signatures."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from api.conftest import lead
from sqlmodel import select

from duly.api.routes.slack import background_done
from duly.notify import notify_alert
from duly.notify.slack import blocks
from duly.store.db import write_session
from duly.store.models import Alert, Instance, SlackMessage, Task
from slack.conftest import SLACK_IDS, SlackWorld, signed

TRIGGER = "13345224609.738474920.8088930838d88f008e0"


def block_actions(user: str, action: dict[str, Any], response_url: str) -> dict[str, Any]:
    """A `block_actions` payload in the shape Slack documents."""
    return {
        "type": "block_actions",
        "user": {"id": SLACK_IDS[user], "username": user, "team_id": "T0ACME"},
        "api_app_id": "A0DULY",
        "team": {"id": "T0ACME", "domain": "acme"},
        "container": {"type": "message", "message_ts": "1001.000100", "channel_id": "D0X"},
        "trigger_id": TRIGGER,
        "channel": {"id": "D0X", "name": "directmessage"},
        "response_url": response_url,
        "actions": [{"block_id": "duly_task", "action_ts": f"{time.time():.6f}", **action}],
    }


def actions_of(call_blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for b in call_blocks if b["type"] == "actions" for e in b["elements"]]


def facts_text(call_blocks: list[dict[str, Any]]) -> str:
    return json.dumps(call_blocks)


async def test_an_assignment_arrives_as_a_dm_with_a_button_per_outcome(world: SlackWorld) -> None:
    # Slack rate-limits the first post and fails the second: the delivery still goes, once
    world.slack.fail(
        "chat.postMessage",
        web.json_response(
            {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "0"}
        ),
        web.json_response({"ok": False, "error": "internal_error"}),
    )
    instance_id = await world.api.start("lead-follow-up", lead(owner="ana"))
    task = await world.api.open_task(instance_id, "first-call")
    await world.deliver()

    posts = [c for c in world.slack.of("chat.postMessage") if c.body.get("channel") == "U0ANA"]
    assert len(posts) == 3  # the 429, the error, the post Slack took
    post = posts[-1]
    assert post.token.startswith("xoxb-")
    buttons = actions_of(post.body["blocks"])
    outcomes = [b for b in buttons if b.get("action_id", "").startswith(blocks.COMPLETE)]
    assert [b["text"]["text"] for b in outcomes] == ["reached", "no-answer", "wrong-number"]
    assert {b["value"] for b in outcomes} == {task.id}
    text = facts_text(post.body["blocks"])
    assert "Kim Lee" in text and "*Due*" in text and "business time left" in text
    (stored,) = world.api.rows(SlackMessage, SlackMessage.task_id == task.id)
    assert stored.channel == "D0ANA" and stored.closed_at is None


async def test_a_click_completes_the_task_and_a_second_click_hears_it_is_done(
    world: SlackWorld,
) -> None:
    instance_id = await world.api.start("lead-follow-up", lead(owner="ana"))
    task = await world.api.open_task(instance_id, "first-call")
    await world.deliver()
    (stored,) = world.api.rows(SlackMessage, SlackMessage.task_id == task.id)
    # the first chat.update fails: the message is updated on the deliverer's next round
    world.slack.fail("chat.update", web.json_response({"ok": False, "error": "internal_error"}))

    hook, url = world.response_url()
    click = {"action_id": f"{blocks.COMPLETE}:reached", "type": "button", "value": task.id}
    response = await world.interact(block_actions("ana", click, url))
    assert response.status_code == 200 and response.content == b""

    done = await world.api.until(
        lambda: world.api.row(Task, task.id).status == "completed", "completion"
    )
    assert done
    completed = world.api.row(Task, task.id)
    assert completed.outcome == "reached" and completed.closed_by == "ana"
    assert world.slack.of(hook) == []  # success says nothing ephemerally: the message changes
    # the deliverer's rounds update the message, again after Slack failed the first update
    await world.rounds_until(
        lambda: world.api.row(SlackMessage, stored.delivery_key).closed_at is not None,
        "the message update",
    )
    updates = [c for c in world.slack.of("chat.update") if c.body["ts"] == stored.ts]
    assert updates, "the original message was never updated"
    last = updates[-1].body
    assert actions_of(last["blocks"]) == []  # no stale buttons
    assert "Already completed (reached) by Ana Silva at" in last["text"]
    assert len(updates) >= 2  # the failed update and the one Slack took

    again, again_url = world.response_url()
    await world.interact(block_actions("ana", click, again_url))
    (answer,) = world.slack.of(again)
    assert answer.body["response_type"] == "ephemeral"
    assert answer.body["replace_original"] is False
    assert answer.body["text"].startswith("Already completed (reached) by Ana Silva at")
    assert world.api.row(Task, task.id).outcome == "reached"


async def test_a_step_with_fields_opens_a_modal_and_its_submission_completes_it(
    world: SlackWorld,
) -> None:
    instance_id = await world.api.start("lead-follow-up", lead(owner="ana", source="referral"))
    task = await world.api.open_task(instance_id, "qualify")
    await world.deliver()
    post = [c for c in world.slack.of("chat.postMessage") if task.id in json.dumps(c.body)][-1]
    (button,) = [b for b in actions_of(post.body["blocks"]) if "action_id" in b]
    assert button["action_id"] == blocks.OPEN_MODAL

    _, url = world.response_url()
    await world.interact(block_actions("ana", dict(button), url))
    (opened,) = [c for c in world.slack.of("views.open") if c.body["trigger_id"] == TRIGGER][-1:]
    view = opened.body["view"]
    inputs = {b["block_id"]: b for b in view["blocks"]}
    assert inputs["field.budget"]["element"]["type"] == "number_input"
    assert inputs["field.budget"]["hint"]["text"]  # the field's help
    # a picklist, and a field asked for only some outcomes is checked against the one chosen
    assert inputs["field.timeline"]["element"]["type"] == "static_select"
    assert inputs["field.reason"]["optional"] is True
    assert view["private_metadata"] == task.id

    def submission(values: dict[str, Any]) -> dict[str, Any]:
        return {
            "type": "view_submission",
            "team": {"id": "T0ACME", "domain": "acme"},
            "user": {"id": SLACK_IDS["ana"], "username": "ana", "team_id": "T0ACME"},
            "api_app_id": "A0DULY",
            "trigger_id": TRIGGER,
            "view": {
                "id": "V0TEST",
                "type": "modal",
                "callback_id": view["callback_id"],
                "private_metadata": view["private_metadata"],
                "state": {"values": values},
                "hash": "156772938.1827394",
            },
            "response_urls": [],
        }

    def picked(outcome: str) -> dict[str, Any]:
        return {"value": {"type": "static_select", "selected_option": {"value": outcome}}}

    # budget and timeline are asked for a qualified lead, not for a disqualified one
    missing = await world.interact(submission({"outcome": picked("qualified")}))
    assert missing.json()["response_action"] == "errors"
    assert set(missing.json()["errors"]) == {"field.budget", "field.timeline"}
    assert world.api.row(Task, task.id).status == "open"

    values = {
        "outcome": picked("disqualify"),
        "field.budget": {"value": {"type": "number_input", "value": "25000"}},
        "field.timeline": {
            "value": {"type": "static_select", "selected_option": {"value": "this quarter"}}
        },
        "note": {"value": {"type": "plain_text_input", "value": None}},
    }
    response = await world.interact(submission(values))
    assert response.status_code == 200 and response.content == b""
    await world.api.until(lambda: world.api.row(Task, task.id).status == "completed", "completion")
    assert world.api.row(Task, task.id).outcome == "disqualify"
    await world.api.until(
        lambda: world.api.row(Instance, instance_id).status == "completed", "the instance's end"
    )
    instance = world.api.row(Instance, instance_id)
    assert instance.data["budget"] == 25000 and instance.data["timeline"] == "this quarter"


async def test_a_manager_acknowledges_and_reassigns_from_buttons(world: SlackWorld) -> None:
    instance_id = await world.api.start("lead-follow-up", lead(owner="ana"))
    task = await world.api.open_task(instance_id, "first-call")
    with write_session(world.api.sessions) as session:
        alert = Alert(
            key=f"{task.id}/rung/1:maria",
            event_key=f"{task.id}/rung/1",
            instance_id=instance_id,
            process="lead-follow-up",
            step="first-call",
            clock="step:first-call",
            level="breach",
            recipient="maria",
            message="first-call is past due",
            task_id=task.id,
        )
        session.add(alert)
        session.flush()
        notify_alert(session=session, alert=alert)
        alert_id = alert.id
    await world.deliver()
    post = [c for c in world.slack.of("chat.postMessage") if c.body["channel"] == "U0MARIA"][-1]
    elements = actions_of(post.body["blocks"])
    ack = next(e for e in elements if e.get("action_id") == blocks.ACKNOWLEDGE)
    picker = next(e for e in elements if e.get("type") == "static_select")
    # only Maria's team (inbound-sales) and Maria herself, never Omar's support team
    assert {o["value"] for o in picker["options"]} == {"ana", "ben", "chloe", "maria"}

    hook, url = world.response_url()
    await world.interact(block_actions("maria", {**ack, "action_ts": "1.2"}, url))
    acknowledged = world.api.row(Alert, alert_id)
    assert acknowledged.acknowledged_by == "maria"
    assert world.slack.of(hook) == []

    # a rep may not acknowledge a manager's alert: refused ephemerally, nothing changes
    hook, url = world.response_url()
    pick = {
        "action_id": picker["action_id"],
        "type": "static_select",
        "selected_option": {"text": {"type": "plain_text", "text": "Ben"}, "value": "ben"},
    }
    await world.interact(block_actions("ben", pick, url))
    (refused,) = world.slack.of(hook)
    assert "only managers and admins may reassign" in refused.body["text"]
    assert world.api.row(Task, task.id).assignee == "ana"

    hook, url = world.response_url()
    await world.interact(block_actions("maria", pick, url))
    await world.api.until(lambda: world.api.row(Task, task.id).assignee == "ben", "reassignment")
    assert world.slack.of(hook) == []
    ana_message = world.api.rows(
        SlackMessage, SlackMessage.task_id == task.id, SlackMessage.user_id == "ana"
    )
    await world.rounds_until(
        lambda: world.api.row(SlackMessage, ana_message[0].delivery_key).closed_at is not None,
        "the update of Ana's message",
    )
    updated = {c.body["ts"]: c.body for c in world.slack.of("chat.update")}
    assert updated[ana_message[0].ts]["text"] == "Reassigned to Ben Carter"
    assert actions_of(updated[ana_message[0].ts]["blocks"]) == []


async def test_tampered_and_stale_signatures_get_401_and_change_nothing(world: SlackWorld) -> None:
    instance_id = await world.api.start("lead-follow-up", lead(owner="ana"))
    task = await world.api.open_task(instance_id, "first-call")
    hook, url = world.response_url()
    click = {"action_id": f"{blocks.COMPLETE}:reached", "type": "button", "value": task.id}
    body = urlencode({"payload": json.dumps(block_actions("ana", click, url))}).encode()
    before = len(world.slack.calls)

    tampered = body.replace(b"reached", b"no-answer")
    response = await world.http.post(
        "/api/slack/interactions", content=tampered, headers=signed(body)
    )
    assert response.status_code == 401
    stale = await world.http.post(
        "/api/slack/interactions", content=body, headers=signed(body, at=time.time() - 301)
    )
    assert stale.status_code == 401
    wrong_key = await world.http.post(
        "/api/slack/interactions", content=body, headers=signed(body, secret="not-the-secret")
    )
    assert wrong_key.status_code == 401
    unsigned = await world.http.post("/api/slack/commands", content=b"text=tasks")
    assert unsigned.status_code == 401
    await background_done()
    assert len(world.slack.calls) == before
    assert world.api.row(Task, task.id).status == "open"


async def test_a_retried_request_changes_nothing_twice(world: SlackWorld) -> None:
    instance_id = await world.api.start("lead-follow-up", lead(owner="ana"))
    task = await world.api.open_task(instance_id, "first-call")
    hook, url = world.response_url()
    click = {"action_id": f"{blocks.COMPLETE}:reached", "type": "button", "value": task.id}
    body = urlencode({"payload": json.dumps(block_actions("ana", click, url))}).encode()
    first = await world.http.post("/api/slack/interactions", content=body, headers=signed(body))
    retry = await world.http.post(
        "/api/slack/interactions",
        content=body,
        headers={**signed(body), "X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"},
    )
    assert first.status_code == retry.status_code == 200
    await background_done()
    await world.api.until(lambda: world.api.row(Task, task.id).status == "completed", "completion")
    # the retry neither completed again nor told Ana her task was already done
    assert world.slack.of(hook) == []
    with world.api.sessions() as session:
        assert len(session.exec(select(Task).where(Task.instance_id == instance_id)).all()) >= 1
    assert world.api.row(Task, task.id).outcome == "reached"


async def test_a_breach_marks_the_reps_message_and_completion_closes_the_managers(
    world: SlackWorld,
) -> None:
    instance_id = await world.api.start("lead-follow-up", lead(owner="ana"))
    task = await world.api.open_task(instance_id, "first-call")
    await world.deliver()
    (rep_message,) = world.api.rows(
        SlackMessage, SlackMessage.task_id == task.id, SlackMessage.user_id == "ana"
    )
    assert task.due_at is not None
    await world.api.sleep_until(task.due_at + timedelta(minutes=1))
    await world.api.until(
        lambda: world.api.rows(Alert, Alert.task_id == task.id, Alert.level == "breach"),
        "the breach alert",
    )
    await world.deliver()  # Maria's breach message, with her buttons
    await world.rounds_until(
        lambda: world.api.row(SlackMessage, rep_message.delivery_key).last_line, "the breach line"
    )
    marked = [c.body for c in world.slack.of("chat.update") if c.body["ts"] == rep_message.ts]
    assert marked[-1]["text"].startswith("Past due since ")
    still = [a for a in actions_of(marked[-1]["blocks"]) if "action_id" in a]
    assert len(still) == 3  # the rep can still complete it from the message
    assert world.api.row(SlackMessage, rep_message.delivery_key).closed_at is None
    (manager_message,) = world.api.rows(
        SlackMessage, SlackMessage.task_id == task.id, SlackMessage.user_id == "maria"
    )

    _, url = world.response_url()
    click = {"action_id": f"{blocks.COMPLETE}:reached", "type": "button", "value": task.id}
    await world.interact(block_actions("ana", click, url))
    await world.rounds_until(
        lambda: world.api.row(SlackMessage, manager_message.delivery_key).closed_at is not None,
        "the update of Maria's message",
    )
    closed = [c.body for c in world.slack.of("chat.update") if c.body["ts"] == manager_message.ts]
    assert closed[-1]["text"].startswith("Already completed (reached) by Ana Silva at")
    assert actions_of(closed[-1]["blocks"]) == []


async def test_signed_payloads_of_the_wrong_shape_are_refused_or_ignored_never_a_500(
    world: SlackWorld,
) -> None:
    shapes: list[Any] = [
        {"type": "view_submission", "user": "U0ANA", "view": "x"},
        {"type": "view_submission", "view": {"callback_id": blocks.MODAL, "state": []}},
        {"type": "block_actions", "user": [], "actions": "complete"},
        {"type": "block_actions", "actions": [1, {"action_id": blocks.REASSIGN + ":x"}]},
        [],
    ]
    for shape in shapes:
        body = urlencode({"payload": json.dumps(shape)}).encode()
        response = await world.http.post(
            "/api/slack/interactions", content=body, headers=signed(body)
        )
        assert response.status_code in (200, 400), (shape, response.text)
    not_json = b"payload=%7Bnope"
    response = await world.http.post(
        "/api/slack/interactions", content=not_json, headers=signed(not_json)
    )
    assert response.status_code == 400
    assert "payload" in response.json()["detail"]
    await background_done()


async def test_slack_gets_its_answer_while_the_work_is_still_running(world: SlackWorld) -> None:
    instance_id = await world.api.start("lead-follow-up", lead(owner="ana", source="referral"))
    task = await world.api.open_task(instance_id, "qualify")
    release = world.slack.hold("views.open")  # Slack's API is slow today
    _, url = world.response_url()
    click = {"action_id": blocks.OPEN_MODAL, "type": "button", "value": task.id}
    body = urlencode({"payload": json.dumps(block_actions("ana", click, url))}).encode()
    response = await world.http.post("/api/slack/interactions", content=body, headers=signed(body))
    assert response.status_code == 200  # answered while views.open has not returned
    await world.api.until(lambda: world.slack.of("views.open"), "the views.open call")
    assert not release.is_set()
    release.set()
    await background_done()
