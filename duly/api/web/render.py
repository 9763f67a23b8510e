"""Rendering pages: the shared layout's context, navigation and display filters.

Every page extends `templates/base.html` (blocks: `title`, `content`, `scripts`) and is
rendered with `render(...)`, which adds what the layout needs: the user, the navigation, the
CSRF token for forms and the count of open alerts. A page of another part of duly (the reports
dashboard, say) does the same:

    @router.get("/dashboard", response_class=HTMLResponse)
    def dashboard(request: Request, user: WebUser) -> HTMLResponse:
        return render(request, user, "dashboard.html", {"rows": ...})

and the "Dashboard" entry appears in the navigation as soon as a `/dashboard` route exists.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse
from sqlmodel import func, select

from duly import timefmt
from duly.api.templating import environment
from duly.api.web.session import csrf_token, session_token
from duly.services.access import alerts_visible
from duly.services.alerts import in_state
from duly.services.auth import Principal
from duly.services.context import ServiceContext
from duly.store.models import Alert, User


@dataclass(frozen=True)
class NavItem:
    """One entry of the navigation bar."""

    label: str
    path: str
    optional: bool = False  # shown only when the app serves `path` (pages built elsewhere)
    roles: tuple[str, ...] = ()  # shown only to these roles (empty: everyone)


NAV = (
    NavItem("Inbox", "/inbox"),
    NavItem("Alerts", "/alerts"),
    NavItem("Instances", "/instances"),
    NavItem("Definitions", "/definitions"),
    NavItem("Dashboard", "/dashboard", optional=True),
    NavItem("What if", "/what-if", optional=True, roles=("manager", "admin")),
)


def human_seconds(seconds: float | None, *, signed: bool = False) -> str:
    """`3h 05m`, `2d 4h`, `45s`: a duration as people read it (absolute unless `signed`)."""
    return timefmt.duration(seconds, signed=signed)


@jinja2.pass_context
def when(page: Any, moment: datetime | None, zone: tzinfo | None = None) -> str:
    """A timestamp for people: in `zone`, else the page's `zone`, else UTC; always labelled.

    Templates write `moment|when(zone_for(process))`: the process's calendar zone, or the
    reader's own `timezone:` from org.yaml (`duly.timefmt`).
    """
    chosen = zone or page.get("zone")
    return timefmt.local(moment, chosen if isinstance(chosen, tzinfo) else UTC)


def iso(moment: datetime | None) -> str:
    """A timestamp for `<time datetime>` and the page's script."""
    return "" if moment is None else moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def pretty_json(value: Any) -> str:
    """Data as indented JSON text, for a `<pre>` (escaped there like any text)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _environment() -> Any:
    env = environment()
    env.filters.update(duration=human_seconds, when=when, iso=iso, pretty_json=pretty_json)
    return env


PAGE_ENV = _environment()
"""The pages' template environment (autoescaping, with the display filters)."""


def context_of(request: Request) -> ServiceContext:
    """The API context `create_app` put on the application."""
    context: ServiceContext = request.app.state.duly
    return context


def nav_items(request: Request, user: Principal | None = None) -> list[dict[str, Any]]:
    """The navigation bar's entries, the current page's marked."""
    served = _served_paths(request.app.routes)
    here = request.url.path
    return [
        {
            "label": item.label,
            "path": item.path,
            "active": here == item.path or here.startswith(item.path + "/"),
        }
        for item in NAV
        if not item.optional or item.path in served
        if not item.roles or (user is not None and user.role in item.roles)
    ]


def _served_paths(routes: Any) -> set[str]:
    """Every path the app serves; FastAPI keeps an included router's routes inside it."""
    paths: set[str] = set()
    for route in routes:
        path = getattr(route, "path", None)
        if path:
            paths.add(path)
        included = getattr(route, "original_router", None)  # FastAPI >= 0.16x
        if included is not None:
            paths |= _served_paths(included.routes)
    return paths


def zone_chooser(request: Request, user: Principal | None) -> Callable[[str | None], tzinfo]:
    """`zone_for(process)`: the zone a page shows a process's times in, for this reader.

    Their own `timezone:` from org.yaml when they have one, else the process's calendar zone
    (UTC for a process duly no longer loads).
    """
    context = context_of(request)
    own = None
    if user is not None:
        with context.read() as session:
            row = session.get(User, user.id)
            own = row.timezone if row is not None else None

    zones = {name: p.calendar.timezone for name, p in context.definitions.processes.items()}
    return timefmt.chooser(zones, own)


def open_alert_count(request: Request, user: Principal) -> int:
    """How many alerts the user may see are still open (the navigation's badge)."""
    with context_of(request).read() as session:
        count: int = session.exec(
            select(func.count()).select_from(Alert).where(alerts_visible(user), in_state("open"))
        ).one()
    return count


def render(
    request: Request,
    user: Principal | None,
    template: str,
    values: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    """A page: `template` with `values`, plus what the layout needs.

    Args:
        request: The request (for the navigation and the session's CSRF token).
        user: The signed-in user, or None on the login page.
        template: A template under `duly/api/templates/` that extends `base.html`.
        values: The page's own variables.
        status_code: The HTTP status (a refused form is re-rendered with 409, 422...).
    """
    token = session_token(request)
    page = {
        "request": request,
        "user": user,
        "nav": nav_items(request, user) if user else [],
        "csrf": csrf_token(token) if token and user else "",
        "open_alerts": open_alert_count(request, user) if user else 0,
        "flash": None,
        "error": None,
        "zone_for": zone_chooser(request, user),
        **(values or {}),
    }
    html = PAGE_ENV.get_template(template).render(page)
    return HTMLResponse(html, status_code=status_code, headers=PAGE_HEADERS)


PAGE_HEADERS = {
    # Pages load nothing from elsewhere: scripts and styles from /static only, inline SVG.
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}
