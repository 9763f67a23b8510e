"""A rep's inbox, completing tasks through the workflow's Update, and what is refused."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from duly.language.loader import Definitions
from duly.services.tasks import business_seconds_left
from duly.store.models import Instance, StepFact, Task

from .conftest import Api, lead, quote


async def test_the_inbox_lists_my_open_tasks_soonest_due_first_with_business_time_left(
    api: Api,
) -> None:
    slow = await api.start("quote-follow-up", quote(owner="ana"))  # 2 business days
    fast = await api.start("lead-follow-up", lead(owner="ana"))  # 1 business hour
    other = await api.start("quote-follow-up", quote(owner="ben"))
    for instance in (slow, fast, other):
        await api.open_task(instance)

    inbox = await api.get("/api/tasks", "ana")
    assert inbox.status_code == 200
    page = inbox.json()
    assert page["total"] == 2
    assert [t["instance_id"] for t in page["items"]] == [fast, slow]
    first, second = page["items"]
    assert first["due_at"] < second["due_at"]
    # counted from the wall clock, which the time-skipping server's may be ahead of: exact
    # values are checked below, on a fixed clock
    assert 0 < first["business_seconds_left"] < second["business_seconds_left"]
    assert first["outcomes"] == ["reached", "no-answer", "wrong-number"]
    assert not first["overdue"]

    assert [t["assignee"] for t in (await api.get("/api/tasks", "ben")).json()["items"]] == ["ben"]
    team = (await api.get("/api/tasks", "maria", params={"scope": "all"})).json()
    assert {t["assignee"] for t in team["items"]} == {"ana", "ben"}
    assert (await api.get("/api/tasks", "omar", params={"scope": "all"})).json()["total"] == 0
    paged = (await api.get("/api/tasks", "sam", params={"scope": "all", "limit": 1})).json()
    assert (paged["total"], len(paged["items"])) == (3, 1)


async def test_completing_a_task_moves_the_instance_on_and_records_the_note(api: Api) -> None:
    instance = await api.start("quote-follow-up", quote(owner="ana"))
    task = await api.open_task(instance, "call-customer")

    response = await api.post(
        f"/api/tasks/{task.id}/complete", "ana", {"outcome": "lost", "note": "went with Acme"}
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"task_id": task.id, "outcome": "lost", "next_step": "lost"}
    done = await api.until(lambda: api.row(Instance, instance).status == "completed")
    assert done
    closed = api.row(Task, task.id)
    assert (closed.status, closed.outcome, closed.note, closed.closed_by) == (
        "completed",
        "lost",
        "went with Acme",
        "ana",
    )
    assert api.row(Instance, instance).result == "lost"
    facts = api.rows(StepFact, StepFact.instance_id == instance)
    assert {(f.step, f.outcome) for f in facts} == {("call-customer", "lost"), ("lost", "lost")}


async def test_completing_twice_is_409_and_an_unknown_outcome_422(api: Api) -> None:
    instance = await api.start("quote-follow-up", quote(owner="ana"))
    task = await api.open_task(instance, "call-customer")
    path = f"/api/tasks/{task.id}/complete"

    unknown = await api.post(path, "ana", {"outcome": "maybe"})
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == (
        f"task {task.id} was not completed: 'maybe' is not an outcome of step 'call-customer'; "
        "expected one of reached, voicemail, lost"
    )
    assert api.row(Task, task.id).status == "open"

    first = await api.post(path, "ana", {"outcome": "voicemail"})
    assert first.status_code == 200
    second = await api.post(path, "ana", {"outcome": "voicemail"})
    assert second.status_code == 409
    # said by the instance if the store has not the close yet, else by the store: alike
    assert (
        f"task {task.id} is completed (voicemail by ana), no longer open"
        in (second.json()["detail"])
    )

    # once the task row is closed too, the answer comes from the database, just as clearly
    await api.until(lambda: api.row(Task, task.id).status == "completed")
    third = await api.post(path, "ana", {"outcome": "voicemail"})
    assert third.status_code == 409
    assert third.json()["detail"] == (
        f"task {task.id} is completed (voicemail by ana), no longer open"
    )


async def test_declared_fields_are_checked_and_merged_into_the_instance_data(api: Api) -> None:
    instance = await api.start("lead-follow-up", lead(owner="ben", source="referral"))
    task = await api.open_task(instance, "qualify")
    assert task.fields == {"budget": "number", "timeline": "choice", "reason": "text"}
    path = f"/api/tasks/{task.id}/complete"

    wrong = await api.post(
        path, "ben", {"outcome": "prospect", "fields": {"budget": "lots", "extra": 1}}
    )
    assert wrong.status_code == 422
    detail = wrong.json()["detail"]
    assert "field 'budget' must be number, found 'lots'" in detail
    assert "field 'timeline' (choice) is required for outcome 'prospect'" in detail
    assert "step 'qualify' declares no field extra" in detail

    fields = {"budget": 25000, "timeline": "this quarter"}
    ok = await api.post(path, "ben", {"outcome": "qualified", "fields": fields})
    assert ok.status_code == 200, ok.text
    await api.until(lambda: api.row(Instance, instance).status == "completed")
    assert api.row(Instance, instance).data["budget"] == 25000


async def test_a_task_by_id_shows_its_outcomes_and_time_left_to_whom_may_see_it(api: Api) -> None:
    instance = await api.start("quote-follow-up", quote(owner="chloe"))
    task = await api.open_task(instance)
    mine = await api.get(f"/api/tasks/{task.id}", "chloe")
    assert mine.status_code == 200
    assert mine.json()["outcomes"] == ["reached", "voicemail", "lost"]
    assert mine.json()["business_seconds_left"] > 0
    missing = await api.get("/api/tasks/quote-follow-up/none/x/call-customer/1", "chloe")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no task 'quote-follow-up/none/x/call-customer/1'"


def test_time_left_counts_open_hours_and_goes_negative_once_overdue(
    definitions: Definitions,
) -> None:
    ny = ZoneInfo("America/New_York")
    due = datetime(2026, 3, 4, 10, tzinfo=ny)  # a Wednesday
    left = business_seconds_left(
        definitions, "quote-follow-up", due, datetime(2026, 3, 3, 16, tzinfo=ny)
    )
    assert left == 2 * 3600  # Tuesday 16-17 and Wednesday 9-10: the night does not count
    late = business_seconds_left(
        definitions, "quote-follow-up", due, datetime(2026, 3, 4, 11, 30, tzinfo=ny)
    )
    assert late == -1.5 * 3600
    assert business_seconds_left(definitions, "quote-follow-up", None, due) is None
    gone = business_seconds_left(
        definitions, "retired-process", due, datetime(2026, 3, 4, 9, tzinfo=ny)
    )
    assert gone == 3600  # no calendar left to count on: wall-clock time
