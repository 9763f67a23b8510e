"""The JSON API's routes, one module per resource."""

from __future__ import annotations

from typing import Any

from duly.api.schemas import Problem

_WHY = {
    400: "Malformed request (e.g. a body that is not JSON)",
    401: "No API token, or an invalid one",
    403: "Not allowed for this user; nothing changed",
    404: "No such thing",
    409: "It changed meanwhile (a task no longer open, a key already running)",
    413: "Request body over the size limit",
    422: "Well-formed but wrong; `detail` says what",
    503: "Temporal did not answer; try again",
}


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for the error statuses a route answers with."""
    return {code: {"model": Problem, "description": _WHY[code]} for code in codes}
