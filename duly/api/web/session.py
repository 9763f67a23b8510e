"""The web pages' login: server-side sessions, and CSRF protection.

A person signs in with their user id and their API token (`duly token USER`, the same token
the JSON API takes). Signing in opens a session: a random id (`secrets.token_urlsafe`, 256
bits) in the session cookie, and a row in `web_sessions` keeping only its SHA-256, its user
and when it expires (`SESSION_SECONDS` after sign-in, checked on every request, whatever the
browser does with the cookie). The id is not the token: it signs in no API call, and ends
when its user signs out, when their token is reissued (`duly.services.auth.issue_token` deletes
their sessions) and when it expires. The cookie is `HttpOnly` (no script reads it),
`SameSite=Lax` (no other site's form or script sends it with a POST) and `Secure` whenever
`DULY_PUBLIC_URL` is https (or the request came over https). Web replicas share the sessions
through the database and need no shared key.

Every form that changes something carries a CSRF token: the HMAC-SHA256 of a purpose under the
session's id, which another site can neither read nor compute. The login form, which comes
before any session, is protected by a double-submit cookie instead. `Origin`, when a browser
sends it, must be this site's too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from sqlmodel import Session, col, delete, select
from starlette.responses import Response

from duly.api.deps import get_context
from duly.services.auth import Principal, authenticate, principal_for
from duly.services.context import ServiceContext
from duly.services.errors import NotAllowed, NotAuthenticated
from duly.store.models import User, WebSession
from duly.store.types import utc_now

SESSION_COOKIE = "duly_session"
LOGIN_COOKIE = "duly_login"
CSRF_FIELD = "csrf"
SESSION_SECONDS = 12 * 3600
"""How long a web session lasts: a working day; the token itself lasts until replaced."""
SESSION_ID_BYTES = 32


class LoginRequired(Exception):
    """The page needs a signed-in user; the app answers with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path
        super().__init__(next_path)


class CsrfRejected(NotAllowed):
    """A form POST without this session's CSRF token, or from another site."""


def session_token(request: Request) -> str | None:
    """The session id the session cookie holds, if any."""
    return request.cookies.get(SESSION_COOKIE) or None


def csrf_token(token: str, purpose: str = "form") -> str:
    """The CSRF token for a session: only whoever holds the session's id can compute it."""
    return hmac.new(
        token.encode("utf-8", "surrogatepass"), f"duly-csrf:{purpose}".encode(), hashlib.sha256
    ).hexdigest()


def hash_session_id(session_id: str) -> str:
    """What the database keeps of a session id: its SHA-256, in hex."""
    return hashlib.sha256(session_id.encode("utf-8", "surrogatepass")).hexdigest()


def open_session(*, session: Session, user_id: str, now: datetime | None = None) -> str:
    """Start a web session for a user (and forget every expired one); the caller commits.

    Args:
        session: A session in a transaction that writes.
        user_id: The signed-in user.
        now: The time of sign-in; the session expires `SESSION_SECONDS` later.

    Returns:
        The new session id, for the cookie: it is not stored.
    """
    now = now or utc_now()
    session.exec(delete(WebSession).where(col(WebSession.expires_at) <= now))
    session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
    session.add(
        WebSession(
            id_hash=hash_session_id(session_id),
            user_id=user_id,
            created_at=now,
            expires_at=now + timedelta(seconds=SESSION_SECONDS),
        )
    )
    return session_id


def session_user(*, session: Session, session_id: str, now: datetime | None = None) -> Principal:
    """The principal a session id belongs to, while the session lasts.

    Raises:
        NotAuthenticated: No such session (never opened, signed out, revoked by a new token),
            an expired one, or one whose user left org.yaml.
    """
    found = session.exec(
        select(WebSession).where(WebSession.id_hash == hash_session_id(session_id))
    ).first()
    if found is None or found.expires_at <= (now or utc_now()):
        raise NotAuthenticated("no such session, or it has ended: sign in again")
    user = session.get(User, found.user_id)
    if user is None or not user.active:
        raise NotAuthenticated("this session's user is no longer in org.yaml")
    return principal_for(session=session, user=user)


def close_session(*, session: Session, session_id: str) -> None:
    """End a web session (signing out); the caller commits. An unknown id changes nothing."""
    session.exec(delete(WebSession).where(col(WebSession.id_hash) == hash_session_id(session_id)))


def web_user(
    request: Request, context: Annotated[ServiceContext, Depends(get_context)]
) -> Principal:
    """The signed-in user of a page request.

    Raises:
        LoginRequired: No session, or one that has ended (answered with a redirect to the
            login page that comes back here).
    """
    session_id = session_token(request)
    if session_id is None:
        raise LoginRequired(_here(request))
    with context.read() as session:
        try:
            return session_user(session=session, session_id=session_id)
        except NotAuthenticated:
            raise LoginRequired(_here(request)) from None


WebUser = Annotated[Principal, Depends(web_user)]


def check_origin(request: Request) -> None:
    """Refuse a POST a browser says came from another site.

    Raises:
        CsrfRejected: `Origin` (or, without it, `Referer`) names another host.
    """
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin or origin == "null":
        return  # not every client sends one; the CSRF token still has to match
    if urlsplit(origin).netloc != request.headers.get("host", request.url.netloc):
        raise CsrfRejected(
            "this form was sent from another site; open duly's page and submit it from there"
        )


def check_csrf(request: Request, given: str | None) -> None:
    """A form POST must carry the session's CSRF token (and come from this site).

    Raises:
        CsrfRejected: A missing or wrong token, or another site's `Origin`.
    """
    check_origin(request)
    token = session_token(request)
    if token is None or not given or not hmac.compare_digest(csrf_token(token), given):
        raise CsrfRejected(
            "this form has expired (the page is older than your session): reload the page "
            "and submit it again"
        )


def login_challenge(request: Request) -> str:
    """The login form's double-submit value: the one in the login cookie, or a new one."""
    return request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)


def check_login_challenge(request: Request, given: str | None) -> None:
    """The login form must carry the value of its login cookie (no cross-site logins).

    Raises:
        CsrfRejected: The form and the cookie disagree, or another site's `Origin`.
    """
    check_origin(request)
    cookie = request.cookies.get(LOGIN_COOKIE)
    if not cookie or not given or not hmac.compare_digest(cookie.encode(), given.encode()):
        raise CsrfRejected("the login form has expired: reload the page and sign in again")


def sign_in(*, session: Session, user_id: str, token: str) -> Principal:
    """The user a login form names, if the token is theirs.

    Raises:
        NotAuthenticated: An unknown user, or a token that is not theirs; one message for
            both, so the form does not tell which user ids exist.
    """
    try:
        principal = authenticate(session=session, token=token.strip())
    except NotAuthenticated:
        principal = None
    if principal is None or principal.id != user_id.strip():
        raise NotAuthenticated(
            "that user id and token do not match: use the token `duly token USER` printed "
            "for you (a newer one replaces it)"
        )
    return principal


def set_session(request: Request, response: Response, session_id: str) -> None:
    """Give the browser its session: the cookie that carries the session id."""
    response.set_cookie(
        SESSION_COOKIE,
        session_id,
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")


def secure_cookies(request: Request) -> bool:
    """Whether cookies get `Secure`: `DULY_PUBLIC_URL` is https, or this request came over https.

    Behind a TLS proxy in another container the request itself looks like plain http, so the
    public URL decides.
    """
    context: ServiceContext = request.app.state.duly
    public = context.settings.public_url.strip().lower()
    return public.startswith("https://") or request.url.scheme == "https"


def set_login_challenge(request: Request, response: Response, value: str) -> None:
    """Keep the login form's double-submit value in a short-lived cookie."""
    response.set_cookie(
        LOGIN_COOKIE,
        value,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="lax",
        secure=secure_cookies(request),
    )


def end_session(request: Request, response: Response) -> None:
    """Tell the browser to forget the session cookie (`close_session` ends the session)."""
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="lax", secure=secure_cookies(request)
    )


def safe_next(path: str | None) -> str:
    """Where to go after signing in: a path on this site only (never `//evil.test`)."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/"
    return path


def login_url(next_path: str) -> str:
    """The login page that comes back to `next_path`."""
    return "/login?next=" + quote(safe_next(next_path), safe="/")


def _here(request: Request) -> str:
    query = f"?{request.url.query}" if request.url.query else ""
    return request.url.path + query
