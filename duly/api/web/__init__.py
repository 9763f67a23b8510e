"""duly's web pages and static files, served by the API's FastAPI app.

`install(app)` adds them: the pages (`pages.py`), `/static` (styles, the pages' script and
Swagger UI's files, so `/docs` works offline), `/docs` itself, and the handlers that turn a
missing login into a redirect and a refusal on a page into an HTML page saying why.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from duly.api.errors import http_status
from duly.api.web.dashboard import router as dashboard_router
from duly.api.web.pages import router
from duly.api.web.publish import router as publish_router
from duly.api.web.render import render
from duly.api.web.session import LoginRequired, login_url, web_user
from duly.api.web.whatif import router as what_if_router
from duly.services.errors import ServiceError

STATIC = Path(__file__).resolve().parent.parent / "static"
"""The web pages' styles and scripts, and the vendored Swagger UI."""

DOCS_URL = "/docs"


def install(app: FastAPI) -> None:
    """Serve the web pages, the static files and an offline `/docs` from `app`.

    Call it after the app's own exception handlers are registered: a `ServiceError` on a
    page becomes an HTML page, and on the JSON API stays the API's answer.
    """
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.include_router(router)
    app.include_router(dashboard_router)
    app.include_router(publish_router)  # admins: publish definitions, replay unheard events
    app.include_router(what_if_router)
    _offline_docs(app)
    api_handler = app.exception_handlers.get(ServiceError)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        if request.url.path.startswith("/api/") or api_handler is None:
            if api_handler is None:
                raise exc
            answer = api_handler(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        try:
            user = web_user(request, request.app.state.duly)
        except LoginRequired:
            user = None
        return render(
            request,
            user,
            "error.html",
            {"status": http_status(exc), "message": exc.message},
            status_code=http_status(exc),
        )

    async def to_login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        return RedirectResponse(login_url(exc.next_path), status_code=303)

    app.add_exception_handler(ServiceError, refused)
    app.add_exception_handler(LoginRequired, to_login)


def _offline_docs(app: FastAPI) -> None:
    """`/docs` from the vendored Swagger UI: FastAPI's default loads it from a CDN."""
    oauth2_redirect = f"{DOCS_URL}/oauth2-redirect"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — API",
            oauth2_redirect_url=oauth2_redirect,
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
