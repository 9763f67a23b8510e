"""The `duly` command."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from duly.language.diagram import mermaid
from duly.language.errors import DefinitionError
from duly.language.loader import Definitions, load_definitions, load_paths
from duly.language.schema import json_schema

app = typer.Typer(
    help="duly: run sales processes on time, and measure how consistently they are run.",
    no_args_is_help=True,
    add_completion=False,
)

DefinitionsOption = Annotated[
    Path,
    typer.Option(
        "--definitions",
        envvar="DULY_DEFINITIONS",
        help="Folder of definitions (processes/, calendars/, monitors/, org.yaml).",
    ),
]


class OutputFormat(StrEnum):
    """How `validate` prints its result."""

    text = "text"
    json = "json"


class DiagramFormat(StrEnum):
    """What `render` draws."""

    mermaid = "mermaid"


class SchemaKind(StrEnum):
    """Which file's schema `schema` prints."""

    process = "process"
    calendar = "calendar"
    org = "org"
    monitor = "monitor"


def load_or_exit(definitions: Path) -> Definitions:
    """Load the definitions or print every problem and exit 1."""
    try:
        return load_definitions(definitions)
    except DefinitionError as exc:
        typer.echo(exc.report(), err=True)
        raise typer.Exit(1) from None


@app.command()
def validate(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Folders laid out like definitions/, or files.")
    ] = None,
    definitions: DefinitionsOption = Path("definitions"),
    output: Annotated[OutputFormat, typer.Option("--format")] = OutputFormat.text,
) -> None:
    """Check definitions; exit 0 when all are valid, 1 with every problem listed otherwise."""
    try:
        loaded = load_paths(paths or [], root=definitions)
    except DefinitionError as exc:
        if output is OutputFormat.json:
            body = {"valid": False, "problems": [p.as_dict() for p in exc.problems]}
            typer.echo(json.dumps(body, indent=2))
        else:
            typer.echo(exc.report(), err=True)
        raise typer.Exit(1) from None
    if output is OutputFormat.json:
        body = {
            "valid": True,
            "processes": {
                name: {"version": p.version, "hash": p.hash}
                for name, p in sorted(loaded.processes.items())
            },
            "calendars": sorted(loaded.calendars),
            "monitors": sorted(loaded.monitors),
            "files": loaded.files,
            "problems": [],
        }
        typer.echo(json.dumps(body, indent=2))
        return
    typer.echo(
        f"ok: {len(loaded.files)} files, {len(loaded.processes)} processes "
        f"({', '.join(sorted(loaded.processes)) or 'none'}), {len(loaded.calendars)} calendars, "
        f"{len(loaded.monitors)} monitors, {len(loaded.org.users)} people in "
        f"{len(loaded.org.teams)} teams"
    )


@app.command()
def render(
    process: Annotated[str, typer.Argument(help="The process id, e.g. quote-follow-up.")],
    definitions: DefinitionsOption = Path("definitions"),
    output: Annotated[DiagramFormat, typer.Option("--format")] = DiagramFormat.mermaid,
) -> None:
    """Draw a process as a Mermaid flowchart (outcomes and SLAs on the edges)."""
    loaded = load_or_exit(definitions)
    if process not in loaded.processes:
        known = ", ".join(sorted(loaded.processes))
        typer.echo(f"no process '{process}' (known: {known})", err=True)
        raise typer.Exit(1)
    typer.echo(mermaid(loaded.processes[process].spec), nl=False)


@app.command()
def schema(
    kind: Annotated[SchemaKind, typer.Argument()] = SchemaKind.process,
) -> None:
    """Print the JSON Schema of a definition file, for editors' YAML checking."""
    typer.echo(json.dumps(json_schema(kind.value), indent=2))
