"""duly's imports run one way: no cycle among its modules or its packages, no root script.

The graph is read from the source (AST) of duly/, workflows/ and activities/: every `import`
and `from ... import`, at module level or inside a function, to the module it names
(`from duly.notify import render` names `duly.notify.render`; `from duly.notify import
enqueue` names the package `duly.notify`). Imports under `if TYPE_CHECKING:` never run and are
left out. A package is the first two parts of a module's name: a subpackage of duly
(`duly.store`), one of duly's own modules (`duly.summary`), or one module of workflows/ or
activities/.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from pathlib import Path

from conftest import ROOT

LIBRARY = ("duly", "workflows", "activities")
Graph = dict[str, set[str]]

WAITING: dict[frozenset[str], str] = {}
"""Package cycles known and not yet untangled, with what untangles them: each must still be
there (remove it here once it is gone), and none may grow."""


def modules(root: Path) -> dict[str, Path]:
    """Every module of the library by dotted name (a package by its own name)."""
    found = {}
    for top in LIBRARY:
        for path in sorted((root / top).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(tree: ast.Module) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run: anywhere in the module but under `if TYPE_CHECKING:`."""
    pending: list[ast.AST] = [tree]
    while pending:
        for child in ast.iter_child_nodes(pending.pop()):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                pending.extend(child.orelse)
            elif isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            else:
                pending.append(child)


def named_modules(
    node: ast.Import | ast.ImportFrom, package: str, known: dict[str, Path]
) -> Iterator[str]:
    """What an import names: a library module by its name, anything else by its top level."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield _innermost(alias.name, known) or alias.name.partition(".")[0]
        return
    base = node.module or ""
    if node.level:  # relative: from the importing module's package, up `level - 1` packages
        parts = package.split(".")
        base = ".".join([*parts[: len(parts) - node.level + 1], *filter(None, [node.module])])
    for alias in node.names:
        full = f"{base}.{alias.name}"
        yield full if full in known else _innermost(base, known) or base.partition(".")[0]


def import_graph(root: Path) -> tuple[Graph, dict[str, set[str]]]:
    """The library's module graph, and what each module imports from outside the library."""
    known = modules(root)
    graph: Graph = {name: set() for name in known}
    outside: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in imports(ast.parse(path.read_text(encoding="utf-8"))):
            for target in named_modules(node, package, known):
                if target not in known:
                    outside[name].add(target)
                elif target != name:
                    graph[name].add(target)
    return graph, outside


def _innermost(name: str, known: dict[str, Path]) -> str | None:
    """The deepest library module a dotted name lies in (`a.b.c` in module `a.b`), if any."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def packages(graph: Graph) -> Graph:
    """The graph between packages (the first two parts of each module's name)."""
    between: Graph = {}
    for name, targets in graph.items():
        for target in targets:
            a, b = _package(name), _package(target)
            if a != b:
                between.setdefault(a, set()).add(b)
    return between


def _package(name: str) -> str:
    return ".".join(name.split(".")[:2])


def cycles(graph: Graph) -> list[list[str]]:
    """The shortest cycle through each node that lies on one, each listed once."""
    found: dict[frozenset[str], list[str]] = {}
    for start in sorted(graph):
        path = _shortest_path(graph, start, start)
        if path is not None and frozenset(path) not in found:
            found[frozenset(path)] = path
    return sorted(found.values())


def _shortest_path(graph: Graph, start: str, goal: str) -> list[str] | None:
    """The shortest path from `start` to `goal` (back to itself when they are the same)."""
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for target in sorted(graph.get(node, ())):
            if target == goal:
                path = [node]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return path[::-1]
            if target not in came_from and target != start:
                came_from[target] = node
                queue.append(target)
    return None


def shown(cycle: list[str], graph: Graph | None = None) -> str:
    """A cycle as `a -> b -> a`; between packages, with a module import behind each step."""
    text = cycle[0]
    for here, there in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
        text += f" -> {there}"
        if graph is not None:
            module, target = min(
                (m, t)
                for m, targets in graph.items()
                if _package(m) == here
                for t in targets
                if _package(t) == there
            )
            text += f" ({module} imports {target})"
    return text


def root_scripts(root: Path) -> set[str]:
    """The top-level names of what is run as a script, never imported by the library."""
    scripts = {path.stem for path in root.glob("*.py")}
    for folder in ("scripts", "bench", "tests"):
        scripts |= {folder, *(path.stem for path in (root / folder).glob("*.py"))}
    return scripts - {"__init__"}


GRAPH, OUTSIDE = import_graph(ROOT)


def test_the_graph_holds_the_imports_that_run() -> None:
    assert len(GRAPH) > 150  # every module of the library
    assert "duly.store.models" in GRAPH["duly.store.db"]  # import duly.store.models
    assert "duly.notify.render" in GRAPH["duly.summary"]  # from duly.notify import render
    assert "duly.notify" in GRAPH["duly.worker"]  # from duly.notify import delivering
    assert "duly.summary_schedule" in GRAPH["duly.worker"]  # inside a function
    assert "duly.summary" not in GRAPH["duly.notify.summary_message"]  # TYPE_CHECKING only
    assert "sqlmodel" in OUTSIDE["duly.store.models"]


def test_no_module_imports_itself_through_others() -> None:
    found = cycles(GRAPH)
    assert not found, "import cycles between modules:\n" + "\n".join(map(shown, found))


def test_no_package_depends_on_itself_through_others() -> None:
    between = packages(GRAPH)
    found = [c for c in cycles(between) if not any(set(c) <= w for w in WAITING)]
    assert not found, "import cycles between packages:\n" + "\n".join(
        shown(cycle, GRAPH) for cycle in found
    )
    still = {waiting for waiting in WAITING for c in cycles(between) if set(c) <= waiting}
    gone = [sorted(waiting) for waiting in WAITING if waiting not in still]
    assert not gone, f"untangled now: remove {gone} from WAITING"


def test_the_library_imports_no_root_script() -> None:
    scripts = root_scripts(ROOT)
    assert "worker" in scripts
    found = {module: names & scripts for module, names in OUTSIDE.items() if names & scripts}
    assert not found, f"the library imports scripts it should be imported by: {found}"
