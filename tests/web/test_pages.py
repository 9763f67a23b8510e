"""The web pages over HTTP: login and sessions, CSRF, who sees what, escaping, offline /docs."""

from __future__ import annotations

import re

import httpx
from api.conftest import Api, lead, quote, signed_in_as

from duly.api.web.session import SESSION_COOKIE, csrf_token
from duly.store.db import write_session
from duly.store.models import Task

XSS = "<script>alert(1)</script>"


async def login_form(http: httpx.AsyncClient, next_path: str = "/inbox") -> str:
    page = await http.get(f"/login?next={next_path}")
    assert page.status_code == 200
    found = re.search(r'name="challenge" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


async def sign_in(api: Api, user: str, token: str | None = None) -> httpx.Response:
    challenge = await login_form(api.http)
    return await api.http.post(
        "/login",
        data={
            "challenge": challenge,
            "next": "/inbox",
            "user": user,
            "token": token or api.tokens[user],
        },
    )


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


async def test_pages_need_a_login_and_the_login_comes_back_with_a_safe_session_cookie(
    offline_api: Api,
) -> None:
    http = offline_api.http
    answer = await http.get("/alerts?state=all")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=/alerts%3Fstate%3Dall"

    signed = await sign_in(offline_api, "maria")
    assert signed.status_code == 303 and signed.headers["location"] == "/inbox"
    cookie = next(
        value
        for name, value in signed.headers.multi_items()
        if name == "set-cookie" and value.startswith(SESSION_COOKIE)
    )
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Path=/" in cookie
    page = await http.get("/inbox")
    assert page.status_code == 200 and "Maria Lopez" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


async def test_a_wrong_token_or_another_users_token_signs_nobody_in(offline_api: Api) -> None:
    for user, token in (("maria", "duly_not-a-token"), ("maria", offline_api.tokens["ana"])):
        answer = await sign_in(offline_api, user, token)
        assert answer.status_code == 401
        assert "that user id and token do not match" in answer.text
        assert SESSION_COOKIE not in answer.headers.get("set-cookie", "")
    assert (await offline_api.http.get("/inbox")).status_code == 303


async def test_login_refuses_another_sites_form_and_never_redirects_off_site(
    offline_api: Api,
) -> None:
    http = offline_api.http
    challenge = await login_form(http)
    form = {"challenge": challenge, "user": "ana", "token": offline_api.tokens["ana"]}
    forged = await http.post("/login", data=form, headers={"Origin": "http://evil.test"})
    assert forged.status_code == 403 and SESSION_COOKIE not in http.cookies
    no_challenge = await http.post("/login", data={**form, "challenge": "guess"})
    assert no_challenge.status_code == 403 and SESSION_COOKIE not in http.cookies

    offsite = await http.post("/login", data={**form, "next": "//evil.test/phish"})
    assert offsite.status_code == 303 and offsite.headers["location"] == "/"


async def test_forms_without_the_sessions_csrf_token_are_refused(offline_api: Api) -> None:
    http = offline_api.http
    await sign_in(offline_api, "ana")
    page = await http.get("/inbox")
    token = csrf_of(page)
    assert token == csrf_token(http.cookies[SESSION_COOKIE])

    refused = await http.post("/logout", data={"csrf": "0" * 64})
    assert refused.status_code == 403 and "reload the page" in refused.text
    assert (await http.get("/inbox")).status_code == 200  # still signed in

    out = await http.post("/logout", data={"csrf": token})
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert (await http.get("/inbox")).status_code == 303


async def test_a_new_token_ends_the_sessions_made_with_the_old_one(offline_api: Api) -> None:
    from duly.services.auth import issue_token

    await sign_in(offline_api, "ben")
    assert (await offline_api.http.get("/inbox")).status_code == 200
    with write_session(offline_api.sessions) as session:
        issue_token(session=session, user_id="ben")
    assert (await offline_api.http.get("/inbox")).status_code == 303


async def test_docs_load_nothing_from_another_site(offline_api: Api) -> None:
    http = offline_api.http
    docs = await http.get("/docs")
    assert docs.status_code == 200
    assert re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}", docs.text) == []
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', docs.text)
    assert "/static/swagger-ui/swagger-ui-bundle.js" in assets
    assert "/static/swagger-ui/swagger-ui.css" in assets
    for asset in assets:
        assert (await http.get(asset)).status_code == 200, asset
    assert "openapi.json" in docs.text
    assert (await http.get("/redoc")).status_code == 404


async def test_every_page_shows_a_script_in_a_lead_name_as_text(api: Api) -> None:
    data = lead(owner="ana")
    data["lead"]["name"] = XSS
    instance = await api.start("lead-follow-up", data)
    await api.open_task(instance, "first-call")
    for user, path in (
        ("ana", "/inbox"),
        ("maria", "/inbox?scope=all"),
        ("sam", f"/instances/{instance}"),
        ("sam", "/instances"),
    ):
        signed_in_as(api, user)
        page = await api.http.get(path)
        assert page.status_code == 200, (path, page.text[:300])
        assert XSS not in page.text, path
        if path != "/instances":
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path


async def test_pages_allow_exactly_what_the_api_allows(api: Api) -> None:
    bens = await api.start("quote-follow-up", quote(owner="ben"))
    task = await api.open_task(bens, "call-customer")

    signed_in_as(api, "ana")
    inbox = await api.http.get("/inbox?scope=all")
    assert task.id not in inbox.text and "All I can see" not in inbox.text
    other = await api.http.get(f"/instances/{bens}")
    assert other.status_code == 403 and "no task of yours" in other.text
    forged = await api.http.post(
        f"/tasks/{task.id}/complete", data={"csrf": csrf_of(inbox), "outcome": "reached"}
    )
    assert forged.status_code == 403
    assert f"task {task.id} is assigned to ben: you may see only your own tasks" in forged.text
    assert api.row(Task, task.id).status == "open"

    signed_in_as(api, "maria")
    team = await api.http.get("/inbox?scope=all")
    assert task.id in team.text and "Assigned to ben: only they complete it." in team.text
    assert (await api.http.get(f"/instances/{bens}")).status_code == 200


async def test_an_invalid_completion_shows_the_workflows_reason_and_keeps_the_form(
    api: Api,
) -> None:
    instance = await api.start("lead-follow-up", lead(owner="ana", source="referral"))
    task = await api.open_task(instance, "qualify")
    signed_in_as(api, "ana")
    inbox = await api.http.get("/inbox")
    form = {
        "csrf": csrf_of(inbox),
        "outcome": "prospect",
        "field.budget": "lots",
        "field.timeline": "this quarter",
        "note": "kept on the page",
    }
    refused = await api.http.post(f"/tasks/{task.id}/complete", data=form)
    assert refused.status_code == 422
    assert "field &#39;budget&#39; must be number, found &#39;lots&#39;" in refused.text
    assert 'value="lots"' in refused.text and "kept on the page</textarea>" in refused.text
    assert api.row(Task, task.id).status == "open"

    no_outcome = await api.http.post(f"/tasks/{task.id}/complete", data={**form, "outcome": ""})
    assert no_outcome.status_code == 422 and "choose an outcome" in no_outcome.text

    done = await api.http.post(
        f"/tasks/{task.id}/complete", data={**form, "field.budget": "25,000"}
    )
    assert done.status_code == 303
    await api.until(lambda: api.row(Task, task.id).outcome == "prospect", "the task closing")
    state = await api.state(instance, lambda s: "budget" in s.data)
    assert state.data["budget"] == 25000 and state.data["timeline"] == "this quarter"


async def test_the_inbox_a_completion_leads_to_does_not_offer_its_task_again(api: Api) -> None:
    """The close is written just after the engine takes the completion: until then the task
    row is still open, and the inbox must not list it beside its "Done" notice."""
    instance = await api.start("lead-follow-up", lead(owner="ana", source="referral"))
    task = await api.open_task(instance, "qualify")
    signed_in_as(api, "ana")
    listed = await api.http.get("/inbox")
    assert f'data-task="{task.id}"' in listed.text

    # as drawn before the close is written: the row still open
    drawn = await api.http.get("/inbox", params={"completed": task.id})
    assert api.row(Task, task.id).status == "open"
    assert "Done: <strong>" in drawn.text and f'data-task="{task.id}"' not in drawn.text
    assert "— None" not in drawn.text


async def test_the_form_follows_the_fields_picklists_help_and_outcomes_that_need_them(
    api: Api,
) -> None:
    instance = await api.start("lead-follow-up", lead(owner="ana", source="referral"))
    task = await api.open_task(instance, "qualify")
    signed_in_as(api, "ana")
    inbox = await api.http.get("/inbox")
    # a choice is a drop-down of its options; a field needed for some outcomes says which
    assert '<select name="field.timeline">' in inbox.text
    assert '<option value="next quarter">next quarter</option>' in inbox.text
    assert "number, for prospect, qualified" in inbox.text
    assert "text, optional" in inbox.text and "Yearly budget in USD" in inbox.text
    assert (
        'name="field.budget" type="number" step="any" inputmode="decimal" value="">' in inbox.text
    )

    # disqualifying needs neither budget nor timeline
    done = await api.http.post(
        f"/tasks/{task.id}/complete",
        data={"csrf": csrf_of(inbox), "outcome": "disqualify", "field.reason": "a competitor"},
    )
    assert done.status_code == 303
    await api.until(lambda: api.row(Task, task.id).outcome == "disqualify", "the task closing")
    state = await api.state(instance, lambda s: s.status == "completed")
    assert state.data["reason"] == "a competitor" and "budget" not in state.data
    assert state.data["last_task"]["outcome"] == "disqualify"


async def test_the_dashboard_shows_the_stages_a_record_reached_across_processes(
    api: Api,
) -> None:
    instance = await api.start("lead-follow-up", lead(owner="ana", source="referral"))
    task = await api.open_task(instance, "qualify")
    signed_in_as(api, "ana")
    inbox = await api.http.get("/inbox")
    form = {"csrf": csrf_of(inbox), "outcome": "qualified", "field.budget": "9000"}
    form["field.timeline"] = "this year"
    assert (await api.http.post(f"/tasks/{task.id}/complete", data=form)).status_code == 303
    await api.until(lambda: api.row(Task, task.id).outcome == "qualified", "the task closing")
    await api.state(instance, lambda s: s.status == "completed")

    signed_in_as(api, "maria")
    page = await api.http.get("/dashboard", params={"process": "lead-follow-up"})
    assert page.status_code == 200
    table = page.text[page.text.index('<table id="stages">') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r'<th scope="row">(\w+)</th><td class="num">(\d+)</td>', table)
    # qualified (the outcome's stage) counts as having passed suspect and prospect too
    assert rows == [
        ("suspect", "1"),
        ("prospect", "1"),
        ("qualified", "1"),
        ("quote", "0"),
        ("won", "0"),
    ]
