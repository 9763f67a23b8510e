"""Commands on the definitions: check, draw, document and publish them."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from duly.cli.common import (
    DefinitionsOption,
    counted,
    load_or_exit,
    quiet_logging,
    settings_with,
)
from duly.file_schemas import json_schema
from duly.language.diagram import mermaid
from duly.language.errors import DefinitionError
from duly.language.loader import load_paths

app = typer.Typer()


class OutputFormat(StrEnum):
    """How `validate` prints its result."""

    text = "text"
    json = "json"


class DiagramFormat(StrEnum):
    """What `render` draws."""

    mermaid = "mermaid"
    svg = "svg"
    html = "html"


class SchemaKind(StrEnum):
    """Which file's schema `schema` prints."""

    process = "process"
    calendar = "calendar"
    org = "org"
    monitor = "monitor"
    source = "source"
    scenario = "scenario"


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
    from duly.published import republished_warnings

    warnings = republished_warnings(settings_with().database_url, loaded)
    if output is OutputFormat.json:
        body = {
            "valid": True,
            "warnings": warnings,
            "processes": {
                name: {"version": p.version, "hash": p.hash}
                for name, p in sorted(loaded.processes.items())
            },
            "calendars": sorted(loaded.calendars),
            "monitors": sorted(loaded.monitors),
            "sources": sorted(loaded.sources),
            "files": loaded.files,
            "problems": [],
        }
        typer.echo(json.dumps(body, indent=2))
        return
    names = f" ({', '.join(sorted(loaded.processes))})" if loaded.processes else ""
    typer.echo(
        f"ok: {counted(len(loaded.processes), 'process')}{names}, "
        f"{counted(len(loaded.calendars), 'calendar')}, "
        f"{counted(len(loaded.monitors), 'monitor')}, "
        f"{counted(len(loaded.sources), 'source')}, "
        f"{counted(len(loaded.org.users), 'person', 'people')} in "
        f"{counted(len(loaded.org.teams), 'team')}; {counted(len(loaded.files), 'file')} read"
    )
    for warning in warnings:
        typer.echo(f"warning: {warning}", err=True)


@app.command()
def render(
    process: Annotated[str, typer.Argument(help="The process id, e.g. quote-follow-up.")],
    definitions: DefinitionsOption = Path("definitions"),
    output: Annotated[DiagramFormat, typer.Option("--format")] = DiagramFormat.mermaid,
) -> None:
    """Draw a process: Mermaid source, a standalone SVG, or an offline HTML page."""
    from duly.language.diagram_svg import html_page, svg

    loaded = load_or_exit(definitions)
    if process not in loaded.processes:
        known = ", ".join(sorted(loaded.processes))
        typer.echo(f"no process '{process}' (known: {known})", err=True)
        raise typer.Exit(1)
    draw = {DiagramFormat.mermaid: mermaid, DiagramFormat.svg: svg, DiagramFormat.html: html_page}
    typer.echo(draw[output](loaded.processes[process].spec), nl=False)


@app.command()
def schema(
    kind: Annotated[SchemaKind, typer.Argument()] = SchemaKind.process,
) -> None:
    """Print the JSON Schema of a definition file, for editors' YAML checking."""
    typer.echo(json.dumps(json_schema(kind.value), indent=2))


@app.command()
def docs(
    definitions: DefinitionsOption = Path("definitions"),
    root: Annotated[
        Path, typer.Option("--root", help="The repository folder; docs/ is written under it.")
    ] = Path("."),
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 listing stale files.")
    ] = False,
) -> None:
    """Write docs/ made from the definitions: process diagrams and JSON Schemas."""
    from duly.docs import generate, stale, write

    try:
        files = generate(root, definitions)
    except DefinitionError as exc:
        typer.echo(exc.report(), err=True)
        raise typer.Exit(1) from None
    changed = stale(root, files)
    if check:
        for path in changed:
            typer.echo(f"stale: {path}", err=True)
        if changed:
            typer.echo("run `duly docs` to bring them up to date", err=True)
            raise typer.Exit(1)
        typer.echo(f"ok: {len(files)} generated files are up to date")
        return
    write(root, files)
    typer.echo(f"wrote {len(changed)} of {len(files)} generated files")


@app.command("publish")
def publish_command(
    definitions: DefinitionsOption = Path("definitions"),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Validate and show what changes; publish nothing.")
    ] = False,
) -> None:
    """Validate the folder, show what changes, and publish it whole: running duly picks it up.

    Prints, per process, the steps added, removed and changed, the SLAs that differ and the
    running instances that keep their version. Nothing is published when a file is invalid or
    a process changed without raising its `version:`.
    """
    from duly import published
    from duly.store.crud import VersionConflicts
    from duly.store.db import make_engine, migrate, session_factory, write_session

    settings = settings_with(definitions=definitions)
    quiet_logging()
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
        with write_session(session_factory(engine)) as session:
            plan = published.plan(session, definitions)
            for line in plan.lines():
                typer.echo(line)
            if dry_run or plan.unchanged:
                return
            done = published.publish_plan(session, plan)
        typer.echo(f"published revision {done.revision}")
    except DefinitionError as exc:
        typer.echo(exc.report(), err=True)
        typer.echo("nothing was published", err=True)
        raise typer.Exit(1) from None
    except VersionConflicts as exc:
        typer.echo(f"{exc}\nnothing was published", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
