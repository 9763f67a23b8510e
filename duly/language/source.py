"""Read YAML while remembering the line and column of every key and value."""

from __future__ import annotations

import re
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


def parse_yaml(text: str, file: str) -> Source:
    """Parse one YAML document, raising DefinitionError with the location of a syntax error."""
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or "not valid YAML"
        context = f" {exc.context}" if exc.context else ""
        raise DefinitionError(
            [Problem(file, line, column, f"YAML syntax error: {what}{context}")]
        ) from None
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
                problems.append(
                    Problem(source.file, *_at(key_node), f"duplicate key '{key}'", child)
                )
                continue
            source.key_at[child] = _at(key_node)
            result[key] = _build(value_node, child, source, problems)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), source, problems) for i, item in enumerate(node.value)]
    return _scalar(node)


def _scalar(node: yaml.Node) -> Any:
    # YAML 1.1 reads 17:00 as the base-60 number 1020; an admin means a time of day
    if node.tag.endswith(("int", "float")) and ":" in str(node.value):
        return str(node.value)
    # compose() already resolved the tag (int, float, bool, null, str); construct just this value
    try:
        return _Loader("").construct_object(node)
    except (yaml.YAMLError, ValueError):
        return node.value
