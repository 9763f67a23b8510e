"""One error type for every problem in a definition, pointing at the source."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

YamlPath = tuple[str | int, ...]


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in a definition file, with where it is and what was expected."""

    file: str
    line: int
    column: int
    message: str
    path: YamlPath = field(default=(), compare=False)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        at = f" (at {format_path(self.path)})" if self.path else ""
        return f"{where}: {self.message}{at}"

    def as_dict(self) -> dict[str, object]:
        """A JSON-ready form for editors and CI."""
        return {
            "file": self.file,
            "line": self.line,
            "column": self.column,
            "path": format_path(self.path),
            "message": self.message,
        }


class DefinitionError(Exception):
    """A definition was refused; carries every problem found, not just the first."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(set(problems))
        super().__init__(self.report())

    def report(self) -> str:
        """All problems, one per line, in file order."""
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} found"
        return "\n".join([head, *(str(p) for p in self.problems)])


def format_path(path: YamlPath) -> str:
    """Render a YAML path the way an admin reads it: steps.call-customer.sla.within."""
    parts: list[str] = []
    for part in path:
        if isinstance(part, int):
            parts.append(f"[{part}]")
        else:
            parts.append(("." if parts else "") + part)
    return "".join(parts)
