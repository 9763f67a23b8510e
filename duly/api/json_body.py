"""Request bodies that carry event data, read under duly's event limits.

FastAPI's own reading lets Python's JSON parser fail on hostile input (a 5,000-digit integer,
arrays nested a thousand deep) and takes data the engine cannot carry (nested 200 deep, NaN);
routes that take event data read their body here instead, so every such body is refused with
a 422 naming the reason and the field, or a 400 when it is not JSON, and never a 500.
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError

from duly.event_limits import EventLimitError, check_event, parse_json
from duly.services.errors import Malformed


def read_json(body: bytes) -> Any:
    """The body as JSON, within the event limits (`duly.event_limits`).

    Raises:
        Malformed: Not JSON (or not UTF-8): 400.
        RequestValidationError: Over a limit: 422 `{detail, errors}`, located in `body`.
    """
    try:
        document = parse_json(body)
        check_event(document, loc=(), level=0)
    except EventLimitError as exc:
        raise refusal(exc) from None
    except ValueError as exc:
        raise Malformed(f"the request body is not valid JSON: {exc}") from None
    return document


def refusal(exc: EventLimitError) -> RequestValidationError:
    """The 422 for a value over a limit: the reason, and where (`loc` and the JSON path)."""
    return RequestValidationError(
        [
            {
                "type": f"limit_{exc.kind}",
                "loc": ("body", *exc.loc),
                "msg": exc.reason,
                "input": None,
                "ctx": {"path": exc.path},
            }
        ]
    )
