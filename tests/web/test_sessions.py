"""Web sessions live on the server: sign-out, a new token and expiry end them; cookies are
Secure behind an https public URL; failed sign-ins are limited per user id and per address."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from api.conftest import SECRET, make_store
from sqlmodel import select
from temporalio.client import Client
from typer.testing import CliRunner

from duly.api.app import create_app
from duly.api.web.login_limit import PER_ADDRESS, PER_USER, Limit, LoginLimiter
from duly.api.web.session import SESSION_COOKIE, SESSION_SECONDS, open_session
from duly.cli import app as cli_app
from duly.language.loader import Definitions
from duly.services.auth import issue_token
from duly.settings import Settings
from duly.store.db import make_engine, session_factory, write_session
from duly.store.models import WebSession
from duly.store.types import utc_now


class Site:
    """The app (without Temporal) on a fresh store, and a client per address."""

    def __init__(self, app: Any, sessions: Callable[[], Any], tokens: dict[str, str]) -> None:
        self.app = app
        self.sessions = sessions
        self.tokens = tokens

    def client(self, address: str = "127.0.0.1") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 50_000))
        return httpx.AsyncClient(transport=transport, base_url="http://duly.test")

    def rows(self, user: str) -> list[WebSession]:
        with self.sessions() as session:
            return list(session.exec(select(WebSession).where(WebSession.user_id == user)).all())


@asynccontextmanager
async def serving(definitions: Definitions, tmp_path: Path, **settings: Any) -> AsyncIterator[Site]:
    """The app with `settings` (and `login_limiter`, if given) on a store of its own."""

    async def unreachable() -> Client:
        raise AssertionError("this request must not reach Temporal")

    limiter = settings.pop("login_limiter", None)
    db, sessions, tokens = make_store(tmp_path, definitions)
    app = create_app(
        Settings(events_secret=SECRET, data_dir=tmp_path, **settings),
        definitions,
        engine=db,
        client_factory=unreachable,
        login_limiter=limiter,
    )
    try:
        yield Site(app, sessions, tokens)
    finally:
        db.dispose()


async def sign_in(http: httpx.AsyncClient, user: str, token: str) -> httpx.Response:
    page = await http.get("/login?next=/inbox")
    found = re.search(r'name="challenge" value="([^"]+)"', page.text)
    assert found is not None
    form = {"challenge": found.group(1), "next": "/inbox", "user": user, "token": token}
    return await http.post("/login", data=form)


def csrf_of(page: httpx.Response) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert found is not None, "the page has no CSRF field"
    return found.group(1)


def set_cookies(answer: httpx.Response) -> dict[str, str]:
    """The Set-Cookie headers of an answer, by cookie name."""
    return {
        value.split("=", 1)[0]: value
        for name, value in answer.headers.multi_items()
        if name == "set-cookie"
    }


async def page_with(site: Site, cookie: str, path: str = "/inbox") -> int:
    """The status of a page fetched by a fresh client that holds only this session cookie."""
    async with site.client() as http:
        http.cookies.set(SESSION_COOKIE, cookie)
        return (await http.get(path)).status_code


# --- server-side sessions ------------------------------------------------------------------------


async def test_signing_out_ends_the_session_and_its_cookie_was_never_a_token(
    definitions: Definitions, tmp_path: Path
) -> None:
    async with serving(definitions, tmp_path) as site, site.client() as http:
        signed = await sign_in(http, "ana", site.tokens["ana"])
        assert signed.status_code == 303
        cookie = http.cookies[SESSION_COOKIE]
        assert cookie != site.tokens["ana"] and site.tokens["ana"] not in signed.text
        assert len(site.rows("ana")) == 1 and site.rows("ana")[0].id_hash != cookie

        as_bearer = await http.get("/api/me", headers={"Authorization": f"Bearer {cookie}"})
        assert as_bearer.status_code == 401
        assert await page_with(site, cookie) == 200

        inbox = await http.get("/inbox")
        out = await http.post("/logout", data={"csrf": csrf_of(inbox)})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert site.rows("ana") == []

        # a copy of the old cookie (stolen, or a browser that kept it) signs nobody in
        assert await page_with(site, cookie) == 303
        assert await page_with(site, cookie, "/alerts/live") == 303
        again = await http.get("/api/me", headers={"Authorization": f"Bearer {cookie}"})
        assert again.status_code == 401
        # the API token itself still works: signing out of a browser is not revoking a token
        mine = await http.get("/api/me", headers={"Authorization": f"Bearer {site.tokens['ana']}"})
        assert mine.status_code == 200


async def test_a_new_token_ends_that_users_sessions_and_no_one_elses(
    definitions: Definitions, tmp_path: Path
) -> None:
    async with serving(definitions, tmp_path) as site:
        cookies = {}
        for user in ("ben", "ben", "ana"):  # ben on two browsers
            async with site.client() as http:
                assert (await sign_in(http, user, site.tokens[user])).status_code == 303
                cookies.setdefault(user, []).append(http.cookies[SESSION_COOKIE])
        assert len(site.rows("ben")) == 2

        with write_session(site.sessions) as session:
            new = issue_token(session=session, user_id="ben")

        assert site.rows("ben") == []
        for cookie in cookies["ben"]:
            assert await page_with(site, cookie) == 303
        assert await page_with(site, cookies["ana"][0]) == 200
        async with site.client() as http:
            assert (await sign_in(http, "ben", site.tokens["ben"])).status_code == 401
            assert (await sign_in(http, "ben", new)).status_code == 303


async def test_an_expired_session_is_refused_whatever_the_cookie_says(
    definitions: Definitions, tmp_path: Path
) -> None:
    async with serving(definitions, tmp_path) as site:
        with write_session(site.sessions) as session:
            old = open_session(
                session=session,
                user_id="maria",
                now=utc_now() - timedelta(seconds=SESSION_SECONDS + 60),
            )
            fresh = open_session(session=session, user_id="maria")
        assert await page_with(site, old) == 303
        assert await page_with(site, fresh) == 200
        async with site.client() as http:
            http.cookies.set(SESSION_COOKIE, old)
            login = await http.get("/login?next=/inbox")
            assert login.status_code == 200 and "Sign in to duly" in login.text
        # signing in again forgets expired sessions
        async with site.client() as http:
            assert (await sign_in(http, "maria", site.tokens["maria"])).status_code == 303
        assert len(site.rows("maria")) == 2


async def test_the_session_cookie_lives_as_long_as_the_session(
    definitions: Definitions, tmp_path: Path
) -> None:
    async with serving(definitions, tmp_path) as site, site.client() as http:
        before = utc_now()
        signed = await sign_in(http, "sam", site.tokens["sam"])
        cookie = set_cookies(signed)[SESSION_COOKIE]
        assert f"Max-Age={SESSION_SECONDS}" in cookie and "HttpOnly" in cookie
        (row,) = site.rows("sam")
        assert timedelta(0) <= row.expires_at - before - timedelta(seconds=SESSION_SECONDS)
        assert row.expires_at - before <= timedelta(seconds=SESSION_SECONDS + 60)


# --- Secure cookies ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("public_url", "secure"),
    [("https://duly.example.com", True), ("http://duly.internal:8000", False), ("", False)],
)
async def test_cookies_are_secure_whenever_the_public_url_is_https(
    definitions: Definitions, tmp_path: Path, public_url: str, secure: bool
) -> None:
    async with serving(definitions, tmp_path, public_url=public_url) as site, site.client() as h:
        # The requests are plain http, as behind a TLS proxy in another container; the client
        # keeps no Secure cookie over http, so each one is sent back by hand
        form = await h.get("/login")
        login_cookie = set_cookies(form)["duly_login"]
        assert ("Secure" in login_cookie) is secure
        challenge = cookie_value(login_cookie)
        signed = await h.post(
            "/login",
            data={"challenge": challenge, "user": "ana", "token": site.tokens["ana"]},
            headers={"Cookie": f"duly_login={challenge}"},
        )
        assert signed.status_code == 303
        session_cookie = set_cookies(signed)[SESSION_COOKIE]
        assert ("Secure" in session_cookie) is secure
        held = {"Cookie": f"{SESSION_COOKIE}={cookie_value(session_cookie)}"}
        h.cookies.clear()
        inbox = await h.get("/inbox", headers=held)
        out = await h.post("/logout", data={"csrf": csrf_of(inbox)}, headers=held)
        assert out.status_code == 303
        assert ("Secure" in set_cookies(out)[SESSION_COOKIE]) is secure


def cookie_value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


# --- the sign-in limit ---------------------------------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


async def test_failed_sign_ins_for_one_user_are_limited_with_retry_after(
    definitions: Definitions, tmp_path: Path
) -> None:
    clock = Clock()
    limiter = LoginLimiter(clock=clock)
    async with serving(definitions, tmp_path, login_limiter=limiter) as site:
        for n in range(PER_USER.failures):
            async with site.client(f"198.51.100.{n}") as http:  # a new address each time
                wrong = await sign_in(http, "maria", "duly_guess")
                assert wrong.status_code == 401
            clock.now += 1
        async with site.client("203.0.113.9") as http:
            refused = await sign_in(http, "maria", site.tokens["maria"])  # even the right one
            assert refused.status_code == 429
            assert "too many failed sign-ins for this user id" in refused.text
            assert int(refused.headers["retry-after"]) == PER_USER.seconds - PER_USER.failures
            assert SESSION_COOKIE not in set_cookies(refused)
            # other users are not affected
            assert (await sign_in(http, "ana", site.tokens["ana"])).status_code == 303

        clock.now += int(refused.headers["retry-after"])
        async with site.client("203.0.113.9") as http:
            assert (await sign_in(http, "maria", site.tokens["maria"])).status_code == 303


async def test_failed_sign_ins_from_one_address_are_limited_over_every_user_id(
    definitions: Definitions, tmp_path: Path
) -> None:
    clock = Clock()
    limiter = LoginLimiter(clock=clock)
    async with serving(definitions, tmp_path, login_limiter=limiter) as site:
        async with site.client("192.0.2.7") as http:
            for n in range(PER_ADDRESS.failures):
                assert (await sign_in(http, f"nobody-{n}", "duly_guess")).status_code == 401
            refused = await sign_in(http, "ana", site.tokens["ana"])
            assert refused.status_code == 429
            assert "too many failed sign-ins from your address" in refused.text
            assert int(refused.headers["retry-after"]) == PER_ADDRESS.seconds
        async with site.client("192.0.2.8") as http:
            assert (await sign_in(http, "ana", site.tokens["ana"])).status_code == 303


async def test_a_successful_sign_in_clears_the_users_failures(
    definitions: Definitions, tmp_path: Path
) -> None:
    limiter = LoginLimiter(clock=Clock(), per_user=Limit(3, 600), per_address=Limit(100, 600))
    async with serving(definitions, tmp_path, login_limiter=limiter) as site:
        async with site.client() as http:
            for _ in range(2):
                assert (await sign_in(http, "ben", "duly_typo")).status_code == 401
            assert (await sign_in(http, "ben", site.tokens["ben"])).status_code == 303
        async with site.client() as http:
            for _ in range(2):
                assert (await sign_in(http, "ben", "duly_typo")).status_code == 401
            assert (await sign_in(http, "ben", site.tokens["ben"])).status_code == 303


def test_the_limiter_slides_its_window_and_remembers_a_bounded_number_of_keys() -> None:
    clock = Clock()
    limiter = LoginLimiter(
        clock=clock, per_user=Limit(2, 60), per_address=Limit(1000, 60), max_keys=4
    )
    limiter.failed("ana", "a")
    clock.now += 30
    limiter.failed("ana", "a")
    refusal = limiter.check("ana", "a")
    assert refusal is not None and refusal.retry_after == 30
    clock.now += 30  # the first failure leaves the window: one try more
    assert limiter.check("ana", "a") is None
    limiter.failed("ana", "a")
    refusal = limiter.check("ana", "a")
    assert refusal is not None and refusal.retry_after == 30

    for n in range(10):  # made-up user ids from one address
        limiter.failed(f"user-{n}", "a")
    assert len(limiter._failures) <= 4
    assert limiter.check("ana", "b") is None  # ana's failures were forgotten first


def test_duly_token_signs_the_users_browsers_out(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'duly.db'}"
    root = Path(__file__).resolve().parents[2]
    env = {"DULY_DATABASE_URL": url, "DULY_DEFINITIONS": str(root / "definitions")}
    runner = CliRunner()
    saved = structlog.get_config()  # commands log to the runner's stderr, closed after each
    try:
        assert runner.invoke(cli_app, ["token", "ana"], env=env).exit_code == 0
        engine = make_engine(url)
        sessions = session_factory(engine)
        with write_session(sessions) as session:
            for user in ("ana", "ana", "ben"):
                open_session(session=session, user_id=user)
        result = runner.invoke(cli_app, ["token", "ana"], env=env)
        assert result.exit_code == 0, result.output
        assert "web sessions are signed out" in result.stderr
    finally:
        structlog.configure(**saved)
    with sessions() as session:
        left = session.exec(select(WebSession.user_id)).all()
    engine.dispose()
    assert left == ["ben"]
