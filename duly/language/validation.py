"""Turn pydantic's validation errors into plain-English problems located in the YAML file."""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any, Literal, TypeVar, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from duly.language.errors import Problem, YamlPath
from duly.language.model import STEP_KINDS
from duly.language.source import Source

_TYPE_NAMES = {
    "string_type": "text",
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "dict_type": "a mapping of keys to values",
    "list_type": "a list",
    "model_type": "a mapping of keys to values",
    "model_attributes_type": "a mapping of keys to values",
}


M = TypeVar("M", bound=BaseModel)


def validate_model(model: type[M], source: Source, what: str) -> tuple[M | None, list[Problem]]:
    """Validate a parsed document against a model; every problem is returned, located."""
    if not isinstance(source.data, dict):
        found = "an empty file" if source.data is None else _describe(source.data)
        return None, [source.problem((), f"expected {what} as a mapping of keys, found {found}")]
    try:
        return model.model_validate(source.data), []
    except ValidationError as exc:
        problems = [_problem(model, source, error) for error in exc.errors()]
    # "unknown key 'outcome'; did you mean 'outcomes'?" already says the key is missing
    suggested = {
        (p.path[:-1], m.group(1))
        for p in problems
        if (m := re.search(r"did you mean '([^']+)'", p.message)) and "unknown key" in p.message
    }
    return None, [
        p
        for p in problems
        if not (
            (m := re.fullmatch(r"missing required key '([^']+)'", p.message))
            and (p.path, m.group(1)) in suggested
        )
    ]


def _problem(model: type[BaseModel], source: Source, error: ErrorDetails) -> Problem:
    kind = error["type"]
    path = data_path(source.data, error["loc"], key_error=kind in ("missing", "extra_forbidden"))
    found = error.get("input")
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        key = str(path[-1])
        known = keys_of(model, error["loc"][:-1])
        message = f"unknown key '{key}'" + _did_you_mean(key, known, listing=True)
        return source.problem(path, message, key=True)
    if kind == "missing":
        return source.problem(path[:-1], f"missing required key '{error['loc'][-1]}'", key=True)
    if kind == "union_tag_not_found":
        # the only tagged union read from YAML is a step, tagged by its kind
        kinds = ", ".join(STEP_KINDS)
        return source.problem(path, f"missing 'kind'; expected one of {kinds}", key=True)
    if kind == "union_tag_invalid":
        tag = str(ctx.get("tag"))
        expected = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        message = f"unknown kind '{tag}'; expected one of {', '.join(expected)}"
        return source.problem((*path, "kind"), message + _did_you_mean(tag, expected))
    if kind in _TYPE_NAMES:
        message = f"expected {_TYPE_NAMES[kind]}, found {_describe(found)}"
        if _TYPE_NAMES[kind] == _TYPE_NAMES["dict_type"] and isinstance(found, list):
            message += "; write 'key: value' lines, without '- '"
        return source.problem(path, message)
    if kind == "string_pattern_mismatch":
        # a mapping key (a step id, say) that is not a valid name: point at the key itself
        on_key = error["loc"][-1:] == ("[key]",)
        message = _pattern_message(str(ctx.get("pattern", "")), found)
        return source.problem(path, message, key=on_key)
    if kind == "literal_error":
        wanted = str(ctx.get("expected", "")).replace("'", "")
        message = f"expected one of {wanted}, found {_describe(found)}"
        options = [option.strip() for option in re.split(r",| or ", wanted) if option.strip()]
        return source.problem(path, message + _did_you_mean(str(found), options))
    if kind in ("value_error", "assertion_error"):
        message = str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        return source.problem(path, message)
    if kind == "too_short":
        return source.problem(path, "must not be empty: give at least one entry")
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        return source.problem(path, f"{error['msg'].lower()}, found {_describe(found)}")
    return source.problem(path, f"{error['msg']}, found {_describe(found)}")


def data_path(data: Any, loc: tuple[int | str, ...], *, key_error: bool = False) -> YamlPath:
    """Map pydantic's error location onto the YAML path (dropping union tags and `[key]`).

    Args:
        data: The parsed document.
        loc: pydantic's location of an error.
        key_error: The error is about a missing or unknown key: its last part is kept even when
            the document does not have it, to say where the key would go.
    """
    path: list[str | int] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            path.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            path.append(part)
            node = node[part]
        elif key_error and isinstance(node, dict) and part != "[key]" and loc[-1] == part:
            path.append(part)  # a missing or unknown key: point at where it would go
            node = None
    return tuple(path)


def keys_of(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys a mapping at `loc` accepts, following dicts, lists and tagged unions."""
    target: Any = model
    for part in loc:
        target = _step_into(target, part)
        if target is None:
            return []
    target = _unwrap(target)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return [info.alias or name for name, info in target.model_fields.items()]
    return []


def _unwrap(annotation: Any) -> Any:
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    return annotation


def _step_into(annotation: Any, part: int | str) -> Any:
    annotation = _unwrap(annotation)
    origin = get_origin(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, info in annotation.model_fields.items():
            if part in (name, info.alias):
                return info.annotation
        return None
    if origin is dict:
        return get_args(annotation)[1]
    if origin is list:
        return get_args(annotation)[0]
    if origin in (typing.Union, types.UnionType):
        for member in get_args(annotation):
            member = _unwrap(member)
            if isinstance(member, type) and issubclass(member, BaseModel):
                kind = member.model_fields.get("kind")
                if kind is not None and get_origin(kind.annotation) is Literal:
                    if part in get_args(kind.annotation):
                        return member
        models = [m for m in map(_unwrap, get_args(annotation)) if _is_model(m)]
        if len(models) == 1:
            return _step_into(models[0], part)
    return None


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


# Suggesting compares a word with every candidate; a file naming thousands of undefined steps
# among thousands of steps made that quadratic (15 s for 100 kB). Only candidates of a similar
# length can be close, and past this many of those no suggestion would stand out anyway.
_MAX_SUGGESTION_CANDIDATES = 300


def _did_you_mean(word: str, candidates: list[str], *, listing: bool = False) -> str:
    slack = max(3, len(word) // 2)
    near = [c for c in candidates if abs(len(c) - len(word)) <= slack]
    close = (
        difflib.get_close_matches(word, near, n=1, cutoff=0.7)
        if len(near) <= _MAX_SUGGESTION_CANDIDATES
        else []
    )
    if close:
        return f"; did you mean '{close[0]}'?"
    if listing and candidates:
        return f"; expected one of {', '.join(candidates)}"
    return ""


def did_you_mean(word: str, candidates: list[str]) -> str:
    """A '; did you mean ...?' suffix when a close candidate exists, else ''."""
    return _did_you_mean(word, candidates)


def _pattern_message(pattern: str, found: Any) -> str:
    if pattern.startswith("^DULY_"):
        # never echo the value: it may be the secret itself
        return (
            "give the name of the DULY_* environment variable that holds the secret (e.g. "
            "DULY_HUBSPOT_CLIENT_SECRET), never the secret itself"
        )
    if "\\." in pattern:
        return (
            f"{_describe(found)} is not an event type; "
            "write lowercase words with dots, like quote.sent"
        )
    if "[a-z_]" in pattern:
        return f"{_describe(found)} is not a valid name; use lowercase letters, digits and _"
    return (
        f"{_describe(found)} is not a valid id; "
        "use lowercase words joined by '-', like call-customer"
    )


def describe(value: Any) -> str:
    """A value as an admin would name it in a message: 'text', 5, a list, a mapping."""
    return _describe(value)


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"'{value}'"
    return str(value)
