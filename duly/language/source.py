"""Read YAML while remembering the line and column of every key and value."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import yaml

from duly.language.errors import DefinitionError, Problem, YamlPath


@dataclass
class Source:
    """A parsed YAML document and where each of its parts sits in the file."""

    file: str
    data: Any
    # path -> (line, column) of the value; keys -> position of the key itself
    value_at: dict[YamlPath, tuple[int, int]] = field(default_factory=dict)
    key_at: dict[YamlPath, tuple[int, int]] = field(default_factory=dict)

    def position(self, path: YamlPath, *, key: bool = False) -> tuple[int, int]:
        """Line and column (1-based) of a path, falling back to its nearest parent."""
        table = self.key_at if key else self.value_at
        for end in range(len(path), -1, -1):
            prefix = path[:end]
            if prefix in table:
                return table[prefix]
            if prefix in self.value_at:
                return self.value_at[prefix]
        return (1, 1)

    def problem(self, path: YamlPath, message: str, *, key: bool = False) -> Problem:
        """A problem located at a path of this document."""
        line, column = self.position(path, key=key)
        return Problem(self.file, line, column, message, path)


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps YAML 1.2-ish scalars: dates and times stay strings."""


# YAML 1.2 scalars, not 1.1: `on:` is a key, not the boolean true (only true/false are
# booleans); dates (2026-12-24) stay text so the models parse them with clear errors.
_Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx)
        for tag, rx in resolvers
        if tag not in ("tag:yaml.org,2002:timestamp", "tag:yaml.org,2002:bool")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)

# libyaml's parser, with the same resolvers, reads valid files several times faster; errors
# are re-read with the Python parser, whose messages the admin-facing wording is built on.
_FastLoader: Any = _Loader
if hasattr(yaml, "CSafeLoader"):

    class _CLoader(yaml.CSafeLoader):
        yaml_implicit_resolvers = _Loader.yaml_implicit_resolvers

    _FastLoader = _CLoader

# Constructs one scalar at a time (its tag is already resolved), keeping no state between them
_CONSTRUCTOR = _Loader("")

# Aliases are shared by reference in the composed document but copied when it is built: a few
# hundred bytes of nested aliases expand to billions of values (the "billion laughs"). No
# definition needs more than a few dozen aliases or nesting deeper than a few dozen levels.
MAX_ALIASES = 200
"""Aliases (`*name`) one file may use."""
MAX_ALIAS_EXPANSION = 20_000
"""Values (scalars, lists, mappings) all of a file's aliases may copy in, together."""
MAX_DEPTH = 100
"""Lists and mappings nested inside each other."""


@contextmanager
def collection_paused() -> Iterator[None]:
    """Hold off Python's cycle collector while a definition is read and checked.

    Reading makes hundreds of thousands of small objects that all stay alive until the end, and
    each full collection walks all of them: with the collector running, reading twice the steps
    took three times as long. Nothing read makes reference cycles worth collecting early.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def parse_yaml(text: str, file: str) -> Source:
    """Parse one YAML document, raising DefinitionError with the location of a syntax error."""
    with collection_paused():
        return _parse_yaml(text, file)


def _parse_yaml(text: str, file: str) -> Source:
    try:
        _check_structure(text, file)
        try:
            node = yaml.compose(text, Loader=_FastLoader)
        except yaml.YAMLError:
            node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        if exc.context == "while scanning a simple key" and exc.context_mark:
            mark = exc.context_mark  # the line missing its ':', not the line after it
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise DefinitionError(
            [Problem(file, line, column, f"YAML syntax error: {_syntax_message(exc)}")]
        ) from None
    except yaml.reader.ReaderError as exc:
        # a control character or invalid byte: point at it rather than at "position N"
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - text.rfind("\n", 0, exc.position)
        character = exc.character if isinstance(exc.character, str) else chr(exc.character)
        message = (
            f"YAML syntax error: the character {character!r} (#x{ord(character):04x}) is not "
            "allowed in YAML; delete it"
        )
        raise DefinitionError([Problem(file, line, column, message)]) from None
    except yaml.YAMLError as exc:
        raise DefinitionError([Problem(file, 1, 1, f"YAML syntax error: {exc}")]) from None
    source = Source(file=file, data=None)
    if node is None:
        return source
    problems: list[Problem] = []
    source.data = _build(node, (), source, problems)
    if problems:
        raise DefinitionError(problems)
    return source


def _check_structure(text: str, file: str) -> None:
    """Refuse alias bombs, recursive aliases and deep nesting before the document is built.

    One pass over the parser's events (no values are built), so it takes time linear in the
    text. A syntax error ends the pass quietly: compose() then reports it in its own words.
    """
    try:
        _check_events(yaml.parse(text, Loader=_FastLoader), file)
    except yaml.MarkedYAMLError as exc:
        if "nesting depth" not in str(exc.problem):
            return
        # libyaml stops at 1,000 levels while scanning ahead, before its events reach level
        # 100: the Python parser (no such limit, no recursion) finds where the limit is crossed
        try:
            _check_events(yaml.parse(text, Loader=_Loader), file)
        except yaml.YAMLError:
            return
    except yaml.YAMLError:
        return


def _check_events(events: Iterator[Any], file: str) -> None:
    """Count nesting and aliases along the events.

    Each anchor's size (values, its own aliases expanded) is known when its list or mapping
    closes; each alias adds that size to the total its file copies in.
    """
    anchors: dict[str, int] = {}
    open_anchors: set[str] = set()  # anchored lists and mappings not closed yet
    anchor_of: list[str | None] = []  # per open list or mapping
    size_of: list[int] = [0]  # values so far per open list or mapping (the document at 0)
    aliases = expanded = 0

    def refuse(event: yaml.Event, message: str) -> None:
        mark = event.start_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise DefinitionError([Problem(file, line, column, message)])

    for event in events:
        kind = type(event)
        if kind is yaml.ScalarEvent:
            if event.anchor is not None:
                anchors[event.anchor] = 1
            size_of[-1] += 1
        elif kind is yaml.MappingStartEvent or kind is yaml.SequenceStartEvent:
            if len(anchor_of) >= MAX_DEPTH:
                refuse(event, f"lists and mappings nested more than {MAX_DEPTH} deep")
            if event.anchor is not None:
                open_anchors.add(event.anchor)
            anchor_of.append(event.anchor)
            size_of.append(1)
        elif kind is yaml.MappingEndEvent or kind is yaml.SequenceEndEvent:
            anchor, size = anchor_of.pop(), size_of.pop()
            if anchor is not None:
                anchors[anchor] = size
                open_anchors.discard(anchor)
            size_of[-1] += size
        elif kind is yaml.AliasEvent:
            name = str(event.anchor)
            aliases += 1
            if name in open_anchors:
                refuse(
                    event,
                    f"the alias *{name} is inside the value anchored as &{name}, so it would "
                    "contain itself for ever; copy the part you need instead",
                )
            if aliases > MAX_ALIASES:
                refuse(event, f"more than {MAX_ALIASES} aliases (*name) in one file")
            size = anchors.get(name, 1)
            expanded += size
            if expanded > MAX_ALIAS_EXPANSION:
                refuse(
                    event,
                    f"the aliases up to *{name} copy in more than {MAX_ALIAS_EXPANSION:,} "
                    "values; aliases nested inside aliases multiply, write the values out "
                    "or use fewer aliases",
                )
            size_of[-1] += size


# (context, start of problem) -> what was opened and never closed
_UNCLOSED = {
    ("while parsing a flow mapping", "expected ',' or '}'"): "'{'",
    ("while parsing a flow sequence", "expected ',' or ']'"): "'['",
    ("while scanning a quoted scalar", "found unexpected end of stream"): "quote",
}


def _syntax_message(exc: yaml.MarkedYAMLError) -> str:
    """PyYAML's complaint, said the way an admin can act on it."""
    problem = exc.problem or "not valid YAML"
    context = exc.context or ""
    start = exc.context_mark
    where = f"line {start.line + 1}, column {start.column + 1}" if start else ""
    if "'\\t'" in problem:
        return "a tab character here; indent YAML with spaces, never tabs"
    if context == "expected a single document in the stream":
        return "a definition file holds one YAML document; remove the '---' line"
    if context == "while scanning a simple key":
        return (
            "this line is not 'key: value' (could not find the ':'); add the ':', or start "
            "the line with '#' to make it a comment"
        )
    if problem.startswith("expected '<document start>'"):
        return f"this line does not fit the indentation of the lines above it ({problem})"
    if problem == "mapping values are not allowed here":
        return (
            f"{problem}: is this line indented too far, or does a value contain ': '? "
            "(put such a value in quotes)"
        )
    if "that cannot start any token" in problem:
        return f"{problem}; put a value that starts with it in quotes"
    # unclosed when the parser ran on past the opener's line looking for its end
    end = exc.problem_mark
    ran_on = start is not None and end is not None and end.line > start.line
    for (opened_in, complaint), opener in _UNCLOSED.items():
        if context == opened_in and problem.startswith(complaint) and ran_on:
            return f"the {opener} at {where} is not closed ({problem})"
    if problem.startswith("expected <block end>") and where:
        return (
            f"this line does not fit the indentation of the block that starts at {where} "
            f"({problem})"
        )
    if context and where:
        return f"{problem} ({context} that starts at {where})"
    return f"{problem} ({context})" if context else problem


def _at(node: yaml.Node) -> tuple[int, int]:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _build(node: yaml.Node, path: YamlPath, source: Source, problems: list[Problem]) -> Any:
    source.value_at[path] = _at(node)
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                problems.append(
                    Problem(source.file, *_at(key_node), "a key must be plain text", path)
                )
                continue
            key = str(_scalar(key_node))
            child = (*path, key)
            if key in result:
                first = source.key_at[child][0]
                message = f"duplicate key '{key}': it is already given at line {first}"
                problems.append(Problem(source.file, *_at(key_node), message, child))
                continue
            source.key_at[child] = _at(key_node)
            result[key] = _build(value_node, child, source, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), source, problems) for i, item in enumerate(node.value)]
    return _scalar(node)


_STR = "tag:yaml.org,2002:str"


def _scalar(node: yaml.Node) -> Any:
    if node.tag == _STR:  # most scalars: the text as written, nothing to construct
        return node.value
    # YAML 1.1 reads 17:00 as the base-60 number 1020; an admin means a time of day
    if node.tag.endswith(("int", "float")) and ":" in str(node.value):
        return str(node.value)
    # compose() already resolved the tag (int, float, bool, null, str); construct just this value
    construct = _Loader.yaml_constructors.get(node.tag)
    if construct is None:
        return node.value
    try:
        return construct(_CONSTRUCTOR, node)
    except (yaml.YAMLError, ValueError):
        return node.value
