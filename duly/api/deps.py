"""FastAPI dependencies: the API context, a database session, the current user, Temporal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from temporalio.client import Client

from duly.services.auth import Principal, authenticate
from duly.services.context import ServiceContext

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A user's API token: `duly token USER` issues one (and replaces the old one).",
)


def get_context(request: Request) -> ServiceContext:
    """The API context `create_app` put on the application."""
    context: ServiceContext = request.app.state.duly
    return context


Context = Annotated[ServiceContext, Depends(get_context)]


def get_session(context: Context) -> Iterator[Session]:
    """A database session for the request, closed after it."""
    with context.read() as session:
        yield session


DbSession = Annotated[Session, Depends(get_session)]


def current_user(
    session: DbSession,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> Principal:
    """The user whose bearer token the request carries.

    Raises:
        NotAuthenticated: No token, or an unknown one (401).
    """
    return authenticate(session=session, token=credentials.credentials if credentials else None)


CurrentUser = Annotated[Principal, Depends(current_user)]


async def temporal_client(context: Context) -> Client:
    """The shared Temporal client, connected on first use.

    Raises:
        Unavailable: Temporal did not answer (503).
    """
    return await context.temporal.get()


TemporalClient = Annotated[Client, Depends(temporal_client)]


def known_query_parameters(request: Request) -> None:
    """Refuse a query parameter the route does not take (`?stat=open` for `?state=open`).

    FastAPI ignores unknown ones, so a mistyped filter would quietly answer unfiltered figures.

    Raises:
        RequestValidationError: A parameter the route does not declare (a 422 naming it).
    """
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = {param.alias for param in _query_params(dependant)}
    unknown = sorted(set(request.query_params) - known)
    takes = ", ".join(sorted(known)) or "none"
    if unknown:
        raise RequestValidationError(
            [
                {
                    "type": "extra_forbidden",
                    "loc": ("query", name),
                    "msg": f"unknown query parameter; this route takes: {takes}",
                    "input": request.query_params.get(name),
                }
                for name in unknown
            ]
        )


def _query_params(dependant: Any) -> list[Any]:
    """Every query parameter of a route, its dependencies' included."""
    found = list(dependant.query_params)
    for sub in dependant.dependencies:
        found += _query_params(sub)
    return found
