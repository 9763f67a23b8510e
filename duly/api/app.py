"""The FastAPI application: duly's JSON API (OpenAPI at /docs).

`duly up` serves it beside the worker; on its own: `uvicorn --factory duly.api.app:create_app`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import structlog
from fastapi import Depends, FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import iter_route_contexts
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import Client

from duly import metrics
from duly.api import web
from duly.api.deps import current_user, known_query_parameters
from duly.api.errors import http_status
from duly.api.json_body import refusal
from duly.api.middleware import MAX_BODY_BYTES, BodyLimit, SecurityHeaders
from duly.api.openapi import documented_openapi
from duly.api.routes import alerts, events, instances, me, reports, sources, tasks
from duly.api.routes import calendar as calendar_routes
from duly.api.routes import definitions as definitions_routes
from duly.api.routes import slack as slack_routes
from duly.api.web.login_limit import LoginLimiter
from duly.event_limits import EventLimitError
from duly.language.loader import Definitions, load_definitions
from duly.published import PublishedDefinitions
from duly.services.context import ClientFactory, ServiceContext, TemporalProvider
from duly.services.errors import ServiceError
from duly.settings import Settings, get_settings
from duly.store.db import make_engine, migrate, session_factory
from duly.temporal_client import connect

log = structlog.get_logger(__name__)

DESCRIPTION = """\
duly runs a sales team's processes on time. Every call but `POST /api/events` takes a user's
API token as `Authorization: Bearer <token>` (`duly token USER` issues one); what each role may
see and do is in `duly/services/access.py`. Inbound events are signed instead: see docs/events.md.

Errors answer `{"detail": "what was wrong, and what to do"}`; a 422 for a request of the wrong
shape also lists each problem, located, in `errors`.
"""


def create_app(
    settings: Settings | None = None,
    definitions: Definitions | None = None,
    *,
    engine: Engine | None = None,
    client: Client | None = None,
    client_factory: ClientFactory | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
    login_limiter: LoginLimiter | None = None,
) -> FastAPI:
    """Build the API.

    Args:
        settings: duly's settings; read from the environment when not given.
        definitions: The loaded definitions; loaded from `settings.definitions` when not given.
        engine: The database engine; one on `settings.database_url` (migrated to the newest
            schema, disposed at shutdown) when not given.
        client: A connected Temporal client to share (the one `duly up` made).
        client_factory: Connects a Temporal client on first use, when `client` is not given;
            defaults to `settings.temporal_address`.
        max_body_bytes: Larger request bodies are refused with 413.
        login_limiter: Counts failed sign-ins on the web pages; a new one (this process's
            memory, the default limits) when not given.

    Returns:
        The application; `app.state.duly` is its `ServiceContext`.
    """
    settings = settings or get_settings()
    definitions = definitions if definitions is not None else load_definitions(settings.definitions)
    owned = engine is None
    database = engine if engine is not None else make_engine(settings.database_url)
    if owned:
        migrate(database)  # the web app may start before the worker
    if client is not None:
        temporal = TemporalProvider.of(client)
    else:
        address, namespace = settings.temporal_address, settings.temporal_namespace
        temporal = TemporalProvider(
            client_factory or (lambda: connect(address, namespace, settings=settings, metrics=True))
        )
    sessions = session_factory(database)
    # every request reads the newest published set (the loaded one until something is published)
    context = ServiceContext(
        settings, definitions, sessions, temporal, PublishedDefinitions(sessions, definitions)
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            database.dispose()

    app = FastAPI(
        title="duly",
        summary="Sales processes on time: tasks, SLAs, alerts.",
        description=DESCRIPTION,
        version="1",
        lifespan=lifespan,
        docs_url=None,  # served by duly.api.web from vendored files: FastAPI's loads a CDN
        redoc_url=None,
    )
    app.openapi = documented_openapi(app)  # type: ignore[method-assign]
    app.state.duly = context
    app.state.login_limiter = login_limiter or LoginLimiter()
    app.include_router(events.router)  # signed, not authenticated
    app.include_router(sources.router)  # signed by each CRM's own scheme
    app.include_router(slack_routes.router)  # signed with the Slack app's signing secret
    app.include_router(calendar_routes.router)  # a secret per-user URL, for calendar apps
    for module in (instances, tasks, alerts, definitions_routes, me, reports):
        # Who is asking, before anything else about the request: an unauthenticated caller
        # gets 401, never a validation message (the user is resolved once per request)
        app.include_router(
            module.router, dependencies=[Depends(current_user), Depends(known_query_parameters)]
        )
    app.add_route("/metrics", metrics.endpoint, include_in_schema=False)  # for Prometheus
    app.add_exception_handler(ServiceError, _service_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid_request)  # type: ignore[arg-type]
    app.add_exception_handler(EventLimitError, _over_limit)  # type: ignore[arg-type]
    app.add_exception_handler(OperationalError, _database_unavailable)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
    web.install(app)  # the web pages, /static and /docs (after the API's error handlers)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(metrics.RequestCounter)
    return app


async def _service_error(_: Request, exc: ServiceError) -> JSONResponse:
    status = http_status(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": exc.message}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    if exc.status_code != 405:
        return await http_exception_handler(request, exc)
    allowed = _methods_of(request.app, request.scope.get("route"))
    headers = {**(exc.headers or {}), **({"Allow": ", ".join(allowed)} if allowed else {})}
    return JSONResponse({"detail": exc.detail}, status_code=405, headers=headers)


def _methods_of(app: FastAPI, refusing: object) -> list[str]:
    """Every method of the resource whose route refused the method (none: not a route's).

    Starlette's `Allow` names the methods of that one route; a resource served by several
    routes (GET and POST /api/instances) allows all of theirs.
    """
    template = getattr(refusing, "path", None)
    if template is None:
        return []
    return sorted(
        {
            method
            for route in iter_route_contexts(app.router.routes)
            if route.path == template
            for method in route.methods or ()
        }
    )


async def _over_limit(request: Request, exc: EventLimitError) -> JSONResponse:
    """Event data a service found over duly's limits: the same 422 as a body over them."""
    return await _invalid_request(request, refusal(exc))


async def _invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors: list[dict[str, Any]] = _text_safe(jsonable_encoder(exc.errors()))
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = (error.get("ctx") or {}).get("error") or error.get("msg", "")
            return JSONResponse(
                {"detail": f"the request body is not valid JSON: {reason}"}, status_code=400
            )
    return JSONResponse({"detail": _summary(errors), "errors": errors}, status_code=422)


def _text_safe(value: Any) -> Any:
    """The errors, with any unpaired surrogate written as a backslash escape.

    An answer may name a key or value the request held (JSON allows a lone surrogate escape),
    and the answer itself must be UTF-8.
    """
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list):
        return [_text_safe(item) for item in value]
    if isinstance(value, dict):
        return {_text_safe(key): _text_safe(item) for key, item in value.items()}
    return value


def _summary(errors: list[dict[str, Any]], most: int = 5) -> str:
    """`body.outcome: Field required; query.limit: ...`: what was wrong, where."""
    parts = [
        f"{'.'.join(str(part) for part in error.get('loc', ())) or 'request'}: {error.get('msg')}"
        for error in errors[:most]
    ]
    more = f" (and {len(errors) - most} more)" if len(errors) > most else ""
    return "; ".join(parts) + more


async def _database_unavailable(request: Request, exc: OperationalError) -> JSONResponse:
    # The pool's pre-ping reconnects on the next request once the database is back
    log.error("database_unavailable", path=request.url.path, error=str(exc.orig))
    return JSONResponse(
        {"detail": "duly's database is unavailable; try again in a moment"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", path=request.url.path, method=request.method)
    return JSONResponse(
        {"detail": "duly failed to answer this request; the server log says why"},
        status_code=500,
    )
