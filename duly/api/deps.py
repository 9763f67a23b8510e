"""FastAPI dependencies: the API context, a database session, the current user, Temporal."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel import Session
from temporalio.client import Client

from duly.api.auth import Principal, authenticate
from duly.api.context import ApiContext

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="token",
    description="A user's API token: `duly token USER` issues one (and replaces the old one).",
)


def get_context(request: Request) -> ApiContext:
    """The API context `create_app` put on the application."""
    context: ApiContext = request.app.state.duly
    return context


Context = Annotated[ApiContext, Depends(get_context)]


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
