"""The OpenAPI document, made to say what the API really answers.

FastAPI documents every route with parameters as answering 422 with its own
`HTTPValidationError`, but duly's handler (`duly.api.app`) answers `Problem`:
`{"detail": ..., "errors": [...]}`. And any route can answer 503 while duly's database (or,
for those that reach it, Temporal) is unavailable. `documented_openapi` fixes both in the
document FastAPI generates, once, when it is first asked for.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

PROBLEM = "#/components/schemas/Problem"
FASTAPI_VALIDATION = "#/components/schemas/HTTPValidationError"
FASTAPI_ONLY = ("HTTPValidationError", "ValidationError")
INVALID = "The request's shape is wrong: `detail` says what, `errors` where"
UNAVAILABLE = "duly's database (or Temporal) is unavailable; try again in a moment (`Retry-After`)"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


def documented_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """`app.openapi` that generates FastAPI's document once and corrects it."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = correct(FastAPI.openapi(app))
        return app.openapi_schema

    return openapi


def correct(document: dict[str, Any]) -> dict[str, Any]:
    """Every 422 answers `Problem`, every operation may answer 503; in place, and returned."""
    for operations in document.get("paths", {}).values():
        for method, operation in operations.items():
            if method not in METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, response in responses.items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if status == "422" and schema == {"$ref": FASTAPI_VALIDATION}:
                    response["description"] = INVALID
                    response["content"]["application/json"]["schema"] = {"$ref": PROBLEM}
            responses.setdefault("503", _problem(UNAVAILABLE))
    schemas = document.get("components", {}).get("schemas", {})
    for name in FASTAPI_ONLY:
        if f'"#/components/schemas/{name}"' not in _text_without(document, name):
            schemas.pop(name, None)
    return document


def _problem(description: str) -> dict[str, Any]:
    content = {"application/json": {"schema": {"$ref": PROBLEM}}}
    return {"description": description, "content": content}


def _text_without(document: dict[str, Any], name: str) -> str:
    """The document as text, less the component `name` itself (which may refer to itself)."""
    schemas = document.get("components", {}).get("schemas", {})
    rest = {key: value for key, value in schemas.items() if key != name}
    components = {**document.get("components", {}), "schemas": rest}
    return json.dumps({**document, "components": components})
