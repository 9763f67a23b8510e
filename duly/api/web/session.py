"""The web pages' login: a cookie session over the user's API token, and CSRF protection.

A person signs in with their user id and their API token (`duly token USER`, the same token
the JSON API takes). The session cookie holds that token: `HttpOnly` (no script reads it),
`SameSite=Lax` (no other site's form or script sends it with a POST), `Secure` when the page
came over HTTPS, and every request checks it the way the API checks a bearer token (against
the stored hash), so issuing a new token ends every session made with the old one.
Nothing about sessions is stored server-side and no signing key has to be shared by replicas.

Every form that changes something carries a CSRF token: the HMAC-SHA256 of a purpose under the
session's token, which another site can neither read nor compute. The login form, which comes
before any session, is protected by a double-submit cookie instead. `Origin`, when a browser
sends it, must be this site's too.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request
from sqlmodel import Session
from starlette.responses import Response

from duly.api.auth import Principal, authenticate
from duly.api.context import ApiContext
from duly.api.deps import get_context
from duly.api.errors import NotAuthenticated, ServiceError

SESSION_COOKIE = "duly_session"
LOGIN_COOKIE = "duly_login"
CSRF_FIELD = "csrf"
SESSION_SECONDS = 12 * 3600
"""How long a web session lasts: a working day; the token itself lasts until replaced."""


class LoginRequired(Exception):
    """The page needs a signed-in user; the app answers with a redirect to the login page."""

    def __init__(self, next_path: str) -> None:
        self.next_path = next_path
        super().__init__(next_path)


class CsrfRejected(ServiceError):
    """A form POST without this session's CSRF token, or from another site."""

    status = 403


def session_token(request: Request) -> str | None:
    """The API token the session cookie holds, if any."""
    return request.cookies.get(SESSION_COOKIE) or None


def csrf_token(token: str, purpose: str = "form") -> str:
    """The CSRF token for a session: only whoever holds the session's token can compute it."""
    return hmac.new(token.encode(), f"duly-csrf:{purpose}".encode(), hashlib.sha256).hexdigest()


def web_user(request: Request, context: Annotated[ApiContext, Depends(get_context)]) -> Principal:
    """The signed-in user of a page request.

    Raises:
        LoginRequired: No session, or its token is no longer the user's (answered with a
            redirect to the login page that comes back here).
    """
    token = session_token(request)
    if token is None:
        raise LoginRequired(_here(request))
    with context.read() as session:
        try:
            return authenticate(session=session, token=token)
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


def set_session(request: Request, response: Response, token: str) -> None:
    """Start the session: the cookie that carries the token."""
    response.set_cookie(
        SESSION_COOKIE,
        token.strip(),
        max_age=SESSION_SECONDS,
        path="/",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )
    response.delete_cookie(LOGIN_COOKIE, path="/login")


def set_login_challenge(request: Request, response: Response, value: str) -> None:
    """Keep the login form's double-submit value in a short-lived cookie."""
    response.set_cookie(
        LOGIN_COOKIE,
        value,
        max_age=3600,
        path="/login",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def end_session(response: Response) -> None:
    """Forget the session cookie."""
    response.delete_cookie(SESSION_COOKIE, path="/")


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
