"""The limits an event's data must keep before duly takes it, whatever way it comes in.

Every way in (`POST /api/events`, `POST /api/instances`, `duly event`, `duly start`, and the CRM
sources and `duly import` that build on them) checks an event here before Temporal is asked
anything: data the engine could not carry (nested deeper than its converter recurses, a number
no JSON reader elsewhere takes back, a string PostgreSQL refuses) is refused at the door with
the reason and the JSON path of the field, instead of being answered "accepted" and then
sticking a workflow.

`parse_json` reads JSON text without letting the parser itself fail on hostile input (very deep
nesting, a 5,000-digit integer, `NaN`); `check_event` checks a parsed value. Both raise
`EventLimitError`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

MAX_DEPTH = 32
"""Objects and arrays nested in one another, counting the event's `data` object as the first."""
MAX_STRING_CHARS = 64 * 1024
"""Characters in one string value."""
MAX_KEY_CHARS = 256
"""Characters in one object key."""
MAX_KEYS = 1_000
"""Keys in one object."""
MAX_ITEMS = 10_000
"""Items in one array."""
MAX_INT = 2**63 - 1
"""Integers must fit a signed 64-bit integer (what SQL and most CRMs store)."""
MIN_INT = -(2**63)
MAX_DATA_BYTES = 256 * 1024
"""The data as compact UTF-8 JSON (the API's whole request body has the same cap)."""

Loc = tuple[str | int, ...]

# a JSON string (escapes included), or one of the characters that shape a document
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]')
# the same without separators: enough to measure nesting, far fewer tokens
_BRACKETS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_INT_DIGITS = 19  # len(str(2**63)): longer integer text cannot fit, whatever its digits


class EventLimitError(ValueError):
    """A value over one of the limits; nothing was taken.

    Attributes:
        reason: What is wrong, for the sender to read.
        loc: Where, as keys and indexes from the event (`("data", "contact", "notes", 3)`).
        kind: A short machine-readable name of the limit (`depth`, `string`, `number`...).
    """

    def __init__(self, kind: str, reason: str, loc: Loc) -> None:
        self.kind = kind
        self.reason = reason
        self.loc = loc
        super().__init__(f"{json_path(loc)}: {reason}")

    @property
    def path(self) -> str:
        """The offending field as a JSON path, e.g. `data.contact.notes[3]`."""
        return json_path(self.loc)


def json_path(loc: Sequence[str | int]) -> str:
    """`("data", "contact", "notes", 3)` as `data.contact.notes[3]`; odd keys are quoted."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif len(part) <= 40 and _IDENTIFIER.fullmatch(part):
            text += f".{part}" if text else part
        else:
            shown = part if len(part) <= 40 else part[:40] + "..."
            text += f"[{json.dumps(shown)}]"
    return text or "(the whole body)"


class _Unreadable:
    """A number the parser kept as text because it is over a limit (reported with its path)."""

    def __init__(self, kind: str, reason: str) -> None:
        self.kind = kind
        self.reason = reason


def _parse_int(text: str) -> int | _Unreadable:
    if len(text) > _INT_DIGITS and len(text.lstrip("-")) > _INT_DIGITS:
        return _Unreadable("number", f"an integer of {len(text.lstrip('-')):,} digits")
    return int(text)


def _parse_float(text: str) -> float | _Unreadable:
    value = float(text)
    if math.isinf(value):
        shown = text if len(text) <= 20 else text[:20] + "..."
        return _Unreadable("number", f"the number {shown}, beyond a float's range")
    return value


def _parse_constant(name: str) -> _Unreadable:
    return _Unreadable("number", f"{name}, which is not a JSON number")


def parse_json(text: str | bytes, *, loc: Loc = (), level: int = 0) -> Any:
    """Read JSON text as `json.loads` does, without letting hostile input break the reader.

    Nesting is measured before parsing (Python's reader recurses, and fails past a thousand
    levels); integers too long to fit 64 bits, numbers beyond a float and `NaN`/`Infinity` are
    kept aside and refused by `check_event` with their path.

    Args:
        text: The JSON text (UTF-8 bytes or str).
        loc: Where the text's top value sits in the event, for messages.
        level: The nesting level of the top value itself: 0 for a request body holding
            `data`, 1 for the data object itself.

    Returns:
        The value, possibly holding placeholders for refused numbers: pass it to `check_event`.

    Raises:
        EventLimitError: Nested deeper than `MAX_DEPTH`.
        ValueError: Not JSON (`json.JSONDecodeError`), or bytes that are not UTF-8.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if _deepest(text, level) > MAX_DEPTH:
        _check_nesting(text, loc, level)  # the slower scan that finds the path
    return json.loads(
        text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant
    )


def _deepest(text: str, level: int) -> int:
    """The deepest nesting level in the text (strings skipped), measured by scanning."""
    depth = deepest = level - 1
    for match in _BRACKETS.finditer(text):
        head = match.group()[0]
        if head in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif head in "]}":
            depth -= 1
    return deepest


def _check_nesting(text: str, loc: Loc, level: int) -> None:
    """Find the first object or array nested past `MAX_DEPTH`, with its path, by scanning."""
    # each frame: [is an object, current key or index]
    frames: list[list[Any]] = []
    last_string = ""
    for match in _TOKENS.finditer(text):
        token = match.group()
        head = token[0]
        if head == '"':
            last_string = token
        elif head in "[{":
            # the path to this value: the key or index it sits at in each open container
            where = (*loc, *(frame[1] for frame in frames if frame[1] is not None))
            if level + len(frames) > MAX_DEPTH:
                raise _too_deep(where)
            frames.append([head == "{", None if head == "{" else 0])
        elif head in "]}":
            if frames:
                frames.pop()
        elif head == ":":
            if frames and frames[-1][0]:
                try:
                    frames[-1][1] = json.loads(last_string)
                except ValueError:
                    frames[-1][1] = last_string
        elif head == "," and frames and not frames[-1][0]:
            frames[-1][1] += 1


def _too_deep(loc: Loc) -> EventLimitError:
    return EventLimitError(
        "depth", f"objects and arrays nested deeper than {MAX_DEPTH} levels", loc
    )


def check_event(data: Any, *, loc: Loc = ("data",), level: int = 1) -> None:
    """Refuse event data over any of the limits, naming the first offending field.

    Args:
        data: The event's data (as parsed JSON: dicts, lists, str, int, float, bool, None).
        loc: Where `data` sits in the event, for messages.
        level: The nesting level of `data` itself (1: the data object is the first level).

    Raises:
        EventLimitError: The reason and the path of the first field over a limit.
    """
    _check_value(data, loc, level)
    size = len(json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode())
    if size > MAX_DATA_BYTES:
        raise EventLimitError(
            "size", f"{size:,} bytes as JSON; at most {MAX_DATA_BYTES:,} are taken", loc
        )


# where a value sits, as a chain (its container's node, its key or index): the tuple of keys is
# built only for a refusal, so checking a large value allocates little
_Node = tuple[Any, str | int] | None


def _loc(prefix: Loc, node: _Node) -> Loc:
    parts: list[str | int] = []
    while node is not None:
        node, part = node
        parts.append(part)
    return (*prefix, *reversed(parts))


def _check_value(value: Any, loc: Loc, level: int) -> None:
    # iterative (an explicit stack), so a deep value from Python code cannot recurse either
    stack: list[tuple[Any, _Node, int]] = [(value, None, level)]
    while stack:
        item, node, depth = stack.pop()
        problem: tuple[str, str] | None = None
        if isinstance(item, dict):
            if depth > MAX_DEPTH:
                raise _too_deep(_loc(loc, node))
            if len(item) > MAX_KEYS:
                problem = (
                    "keys",
                    f"an object of {len(item):,} keys; at most {MAX_KEYS:,} are taken",
                )
            else:
                for key, child in item.items():
                    if not isinstance(key, str):
                        problem = ("type", f"a key of type {type(key).__name__}")
                        break
                    if wrong := _string_problem(key, MAX_KEY_CHARS, "a key"):
                        raise EventLimitError("string", wrong, _loc(loc, (node, key)))
                    stack.append((child, (node, key), depth + 1))
        elif isinstance(item, list):
            if depth > MAX_DEPTH:
                raise _too_deep(_loc(loc, node))
            if len(item) > MAX_ITEMS:
                problem = (
                    "items",
                    f"an array of {len(item):,} items; at most {MAX_ITEMS:,} are taken",
                )
            else:
                stack.extend((child, (node, i), depth + 1) for i, child in enumerate(item))
        elif isinstance(item, str):
            if wrong := _string_problem(item, MAX_STRING_CHARS, "a string"):
                problem = ("string", wrong)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if not MIN_INT <= item <= MAX_INT:
                problem = ("number", "an integer outside the signed 64-bit range")
        elif isinstance(item, float):
            if not math.isfinite(item):
                problem = ("number", f"{item!r}, which is not a JSON number")
        elif isinstance(item, _Unreadable):
            problem = (
                item.kind,
                f"{item.reason}; numbers must be finite, and integers must fit 64 bits",
            )
        else:
            problem = ("type", f"a {type(item).__name__}, which is not a JSON value")
        if problem is not None:
            raise EventLimitError(*problem, _loc(loc, node))


def _string_problem(text: str, most: int, what: str) -> str | None:
    """What is wrong with a string value or key, if anything."""
    if len(text) > most:
        return f"{what} of {len(text):,} characters; at most {most:,} are taken"
    if "\x00" in text:
        # PostgreSQL stores no NUL in text or JSON
        return f"{what} holding a NUL character (\\u0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"{what} holding an unpaired surrogate (not Unicode text)"
    return None
