"""The HTTP status the API answers each kind of service refusal with."""

from __future__ import annotations

from duly.services.errors import (
    Conflict,
    Invalid,
    Malformed,
    NotAllowed,
    NotAuthenticated,
    NotFound,
    ServiceError,
    Unavailable,
)

STATUS: dict[type[ServiceError], int] = {
    Malformed: 400,
    NotAuthenticated: 401,
    NotAllowed: 403,
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    Unavailable: 503,
}


def http_status(exc: ServiceError) -> int:
    """The status of a refusal: its kind's (or the nearest kind it derives from), else 400."""
    for kind in type(exc).__mro__:
        if kind in STATUS:
            return STATUS[kind]
    return 400
