"""What the services refuse, each kind of refusal its own class.

Services (duly/services/) raise these with a message for people: it says what was wrong and,
where there is one, what to do. The JSON API answers each kind with its HTTP status
(`duly.api.errors`), web pages show the message as it is, and the CLI prints it and exits 1.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.service import RPCError, RPCStatusCode

from duly.client import (
    AlreadyRunning,
    ClientError,
    InstanceNotFound,
    MissingKey,
    TaskRejected,
    UnknownProcess,
)
from duly.temporal_client import TemporalUnavailable


class ServiceError(Exception):
    """A request a service refused; the message is for people."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class Malformed(ServiceError):
    """The request cannot be read: a body that is not JSON."""


class NotAuthenticated(ServiceError):
    """No token, or a token that names nobody."""


class NotAllowed(ServiceError):
    """The user may not do this; nothing changed."""


class NotFound(ServiceError):
    """No such thing (or none the user may see)."""


class Conflict(ServiceError):
    """The thing changed since the caller looked: a task no longer open, a key already running."""


class Invalid(ServiceError):
    """The request is well-formed but wrong: an unknown outcome, a bad field, a missing key."""


class Unavailable(ServiceError):
    """Temporal (or the worker behind it) did not answer; trying again later may work."""


def from_client_error(exc: ClientError | TemporalUnavailable) -> ServiceError:
    """The service error for what `duly.client` (or the connection to Temporal) raised."""
    if isinstance(exc, TemporalUnavailable):
        return Unavailable(f"{exc}; try again once it is back")
    if isinstance(exc, TaskRejected):
        return (Conflict if exc.stale else Invalid)(str(exc))
    if isinstance(exc, UnknownProcess | InstanceNotFound):
        return NotFound(str(exc))
    if isinstance(exc, AlreadyRunning):
        return Conflict(str(exc))
    if isinstance(exc, MissingKey):
        return Invalid(str(exc))
    return Unavailable(str(exc))


def from_rpc_error(exc: RPCError) -> ServiceError:
    """The service error for a request Temporal itself refused."""
    kind = {
        RPCStatusCode.INVALID_ARGUMENT: Invalid,
        RPCStatusCode.NOT_FOUND: NotFound,
        RPCStatusCode.ALREADY_EXISTS: Conflict,
        RPCStatusCode.FAILED_PRECONDITION: Conflict,
    }.get(exc.status, Unavailable)
    return kind(f"Temporal refused the request: {exc.message}")


@contextmanager
def translated() -> Iterator[None]:
    """Turn what `duly.client` and Temporal raise inside the block into service errors."""
    try:
        yield
    except (ClientError, TemporalUnavailable) as exc:
        raise from_client_error(exc) from None
    except RPCError as exc:
        raise from_rpc_error(exc) from None
