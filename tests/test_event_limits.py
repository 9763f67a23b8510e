"""The limits every event passes at the door, and the business keys that can name an instance."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from duly.client import InvalidKey, MissingKey, NotAnAddress, check_key, parse_address
from duly.event_limits import (
    MAX_DATA_BYTES,
    MAX_DEPTH,
    MAX_INT,
    MAX_ITEMS,
    MAX_KEY_CHARS,
    MAX_KEYS,
    MAX_STRING_CHARS,
    MIN_INT,
    EventLimitError,
    check_event,
    json_path,
    parse_json,
)


def nested(levels: int, leaf: Any = 1) -> dict[str, Any]:
    """`{"a": {"a": ... leaf}}`: `levels` objects, the outer one included."""
    value: Any = leaf
    for _ in range(levels):
        value = {"a": value}
    return value  # type: ignore[no-any-return]


def refusal(data: Any) -> EventLimitError:
    with pytest.raises(EventLimitError) as refused:
        check_event(data)
    return refused.value


def test_data_at_every_limit_is_taken() -> None:
    check_event(nested(MAX_DEPTH))
    check_event({"s": "x" * MAX_STRING_CHARS, "k" * MAX_KEY_CHARS: 1})
    check_event({f"k{i}": i for i in range(MAX_KEYS)})
    check_event({"items": list(range(MAX_ITEMS))})
    check_event({"n": [MAX_INT, MIN_INT, 1.5e308, -0.0, True, None]})
    check_event({"text": "Größe 東京 😀\n\ttabs and newlines are data"})


@pytest.mark.parametrize(
    ("data", "kind", "path", "reason"),
    [
        (nested(MAX_DEPTH + 1), "depth", "data" + ".a" * MAX_DEPTH, "nested deeper than 32"),
        (
            {"contact": {"notes": ["a", "b", "c", "x" * (MAX_STRING_CHARS + 1)]}},
            "string",
            "data.contact.notes[3]",
            "a string of 65,537 characters; at most 65,536",
        ),
        ({"k" * (MAX_KEY_CHARS + 1): 1}, "string", 'data["' + "k" * 40 + '..."]', "a key of 257"),
        ({"o": {f"k{i}": i for i in range(MAX_KEYS + 1)}}, "keys", "data.o", "1,001 keys"),
        ({"l": [0] * (MAX_ITEMS + 1)}, "items", "data.l", "10,001 items"),
        ({"n": [1, MAX_INT + 1]}, "number", "data.n[1]", "outside the signed 64-bit range"),
        ({"n": MIN_INT - 1}, "number", "data.n", "outside the signed 64-bit range"),
        ({"n": 10**5000}, "number", "data.n", "outside the signed 64-bit range"),
        ({"f": float("nan")}, "number", "data.f", "nan, which is not a JSON number"),
        ({"f": float("-inf")}, "number", "data.f", "-inf, which is not a JSON number"),
        ({"a b": {"c": "x\x00y"}}, "string", 'data["a b"].c', "NUL character"),
        ({"k\x00": 1}, "string", 'data["k\\u0000"]', "a key holding a NUL"),
        ({"s": "\ud800"}, "string", "data.s", "unpaired surrogate"),
        ({"when": object()}, "type", "data.when", "not a JSON value"),
        ({1: "x"}, "type", "data", "a key of type int"),
    ],
)
def test_data_over_a_limit_is_refused_naming_the_field(
    data: Any, kind: str, path: str, reason: str
) -> None:
    refused = refusal(data)
    assert (refused.kind, refused.path) == (kind, path)
    assert reason in refused.reason
    assert str(refused) == f"{path}: {refused.reason}"


def test_the_whole_data_is_limited_in_size() -> None:
    data = {f"k{i}": "x" * 60_000 for i in range(5)}  # each string is fine; together too big
    refused = refusal(data)
    assert (refused.kind, refused.path) == ("size", "data")
    assert f"at most {MAX_DATA_BYTES:,} are taken" in refused.reason


def test_deep_data_made_in_python_is_refused_without_recursing() -> None:
    refused = refusal(nested(100_000))  # far past the interpreter's recursion limit
    assert refused.kind == "depth"
    assert refused.loc == ("data", *["a"] * MAX_DEPTH)


@pytest.mark.parametrize(
    ("body", "path", "reason"),
    [
        (
            b'{"id": "e", "data": {"a": ' + b"[" * 1000 + b"]" * 1000 + b"}}",
            "data.a" + "[0]" * (MAX_DEPTH - 1),
            "nested deeper than 32",
        ),
        (
            b'{"data": ' + b'{"a": ' * 5000 + b"1" + b"}" * 5001,
            "data" + ".a" * MAX_DEPTH,
            "nested deeper than 32",
        ),
        (b'{"data": {"n": ' + b"9" * 5000 + b"}}", "data.n", "an integer of 5,000 digits"),
        (b'{"data": {"n": -' + b"9" * 20 + b"}}", "data.n", "an integer of 20 digits"),
        (b'{"data": {"n": [1, 2, NaN]}}', "data.n[2]", "NaN, which is not a JSON number"),
        (b'{"data": {"n": -Infinity}}', "data.n", "-Infinity, which is not a JSON number"),
        (b'{"data": {"n": 1e400}}', "data.n", "the number 1e400"),
        (
            b'{"data": {"x": ["]]]\\"", {"k\\"[": [' + b"[" * 40 + b"]" * 40 + b"]}]}}",
            'data.x[1]["k\\"["]' + "[0]" * (MAX_DEPTH - 3),
            "nested deeper than 32",
        ),
    ],
)
def test_hostile_json_text_is_refused_naming_the_field_not_crashing_the_parser(
    body: bytes, path: str, reason: str
) -> None:
    with pytest.raises(EventLimitError) as refused:
        document = parse_json(body)
        check_event(document, loc=(), level=0)
    assert refused.value.path == path
    assert reason in refused.value.reason


def test_parsing_is_json_loads_for_ordinary_text() -> None:
    text = json.dumps({"data": {"quote": {"id": "Q-1", "amount": 12.5, "n": [1, None, True]}}})
    assert parse_json(text) == json.loads(text)
    with pytest.raises(ValueError, match="Expecting"):
        parse_json(b'{"id": ')
    with pytest.raises(ValueError):
        parse_json(b'{"id": "\xff"}')


def test_checking_a_full_size_body_is_quick() -> None:
    body = json.dumps({"data": {f"k{i}": ["x" * 200, i, {"y": [1.5]}] for i in range(900)}})
    assert len(body) > 200_000
    began = time.perf_counter()
    check_event(parse_json(body), loc=(), level=0)
    assert time.perf_counter() - began < 2  # a few tens of ms on a quiet machine


def test_json_paths_read_like_the_data() -> None:
    assert json_path(("data", "contact", "notes", 3)) == "data.contact.notes[3]"
    assert json_path(("data", "a.b", "x-y", "_z")) == 'data["a.b"].x-y._z'
    assert json_path(()) == "(the whole body)"


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("Q-1/abc", "holds a '/'"),
        ("..", "'.' and '..' are not keys"),
        (".", "'.' and '..' are not keys"),
        ("a\\b", "holds a '\\'"),
        ("Q?x=1", "holds a '?'"),
        ("Q#1", "holds a '#'"),
        ("50%", "holds a '%'"),
        ("Q-1\nQ-2", "control character U+000A"),
        ("Q\x00", "control character U+0000"),
        ("x" * 1000, "1,000 characters long; at most 200"),
    ],
)
def test_a_key_that_cannot_name_an_instance_is_refused_saying_why(key: str, problem: str) -> None:
    with pytest.raises(InvalidKey) as refused:
        check_key("quote-follow-up", key, "{{ quote.id }}")
    assert isinstance(refused.value, MissingKey)  # refused alike, as the data's fault (422)
    message = str(refused.value)
    assert message.startswith("quote-follow-up: the business key ")
    assert "(from {{ quote.id }}) cannot name an instance: " in message
    assert problem in message


@pytest.mark.parametrize("key", ["Q-1", "a..b", "Größe 東京 😀", "ACME 42", "x" * 200, "..."])
def test_ordinary_keys_are_taken(key: str) -> None:
    assert check_key("quote-follow-up", key, "{{ quote.id }}") == key


def test_an_address_is_an_instance_id_or_a_keys_latest_instance() -> None:
    latest = parse_address("lead-fast/L2")
    assert (latest.workflow_id, latest.instance_id) == ("lead-fast/L2", None)
    one = parse_address("lead-fast/L2/0123456789ab")
    assert (one.workflow_id, one.instance_id) == ("lead-fast/L2", "lead-fast/L2/0123456789ab")
    for text in ("lead-fast", "lead-fast/", "/L2", "lead-fast//abc", ""):
        with pytest.raises(NotAnAddress, match="is not an instance: give its id"):
            parse_address(text)
