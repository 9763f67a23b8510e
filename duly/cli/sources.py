"""Commands on sources: the CRM webhooks in, and backfill from a CRM export."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from duly.cli.common import (
    DefinitionsOption,
    TemporalOption,
    counted,
    load_or_exit,
    open_published_or_exit,
    quiet_logging,
    run,
    settings_with,
)
from duly.tables import table

app = typer.Typer()


@app.command("sources")
def sources_command(definitions: DefinitionsOption = Path("definitions")) -> None:
    """List the sources: each CRM endpoint, its secret's variable, and what its objects become."""
    import os

    loaded = load_or_exit(definitions)
    rows = []
    for name, spec in sorted(loaded.sources.items()):
        if spec.secret:
            secret = f"{spec.secret} ({'set' if os.environ.get(spec.secret) else 'NOT SET'})"
        else:
            secret = "-"
        for index, (obj, rules) in enumerate(spec.objects.items()):
            made = ", ".join(dict.fromkeys(rule.type for rule in rules.events))
            head = (
                (name, spec.crm, f"POST /api/sources/{name}", secret) if index == 0 else ("",) * 4
            )
            rows.append((*head, obj, made))
    typer.echo(
        table(
            ("SOURCE", "CRM", "ENDPOINT", "SECRET", "OBJECT", "EVENTS"),
            rows,
            empty="no sources in definitions/sources/",
        )
    )


@app.command("import")
def import_records(
    file: Annotated[Path, typer.Argument(help="A CSV (with a header row) or JSON-lines export.")],
    source: Annotated[str, typer.Option("--source", help="The source whose rules map it.")],
    object_type: Annotated[
        str | None,
        typer.Option(
            "--object",
            help="The CRM object type of the records (contact, deal, Lead...); needed when "
            "the source maps several.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print what would start (and be past due); send nothing."),
    ] = False,
    definitions: DefinitionsOption = Path("definitions"),
    temporal: TemporalOption = None,
) -> None:
    """Start instances for records already open in the CRM, with their original times.

    Importing the same file again starts nothing new: each event's id comes from the record.
    """
    import sys
    import time
    from datetime import UTC

    from duly.sources.importer import ImportFileError, plan

    loaded = load_or_exit(definitions)
    spec = loaded.sources.get(source)
    if spec is None:
        known = ", ".join(sorted(loaded.sources)) or "none"
        typer.echo(f"no source named '{source}' (known: {known})", err=True)
        raise typer.Exit(1)
    if object_type is None:
        if len(spec.objects) != 1:
            typer.echo(
                f"source '{source}' maps {', '.join(spec.objects)}: say which with --object",
                err=True,
            )
            raise typer.Exit(1)
        object_type = next(iter(spec.objects))
    if object_type not in spec.objects:
        typer.echo(f"source '{source}' does not map '{object_type}'", err=True)
        raise typer.Exit(1)
    try:
        planned = plan(file, spec, object_type, loaded)
    except (ImportFileError, OSError, UnicodeDecodeError) as exc:
        typer.echo(f"cannot import {file}: {exc}", err=True)
        raise typer.Exit(1) from None
    for line, why in planned.skipped:
        typer.echo(f"{file}:{line}: skipped: {why}", err=True)
    if dry_run:
        now = datetime.now(UTC)
        late = 0
        for item in planned.events:
            at = item.event.occurred_at.isoformat() if item.event.occurred_at else "on receipt"
            key = ", ".join(item.processes)
            typer.echo(f"{file}:{item.line}: would start {key} ({item.event.type}, {at})")
            for process, step, due in item.due:
                past = due <= now
                late += past
                state = "PAST DUE" if past else "due"
                typer.echo(f"    {process} {step}: {state} {due.isoformat()}")
        typer.echo(
            f"dry run: {counted(len(planned.events), 'instance')} would start, "
            f"{late} already past due, {counted(len(planned.skipped), 'record')} skipped"
        )
        return
    _import(planned.events, definitions, temporal, sys.stderr.isatty(), time.monotonic)


def _import(
    planned: list[Any],
    definitions: Path,
    temporal: str | None,
    terminal: bool,
    clock: Callable[[], float],
) -> None:
    """Send planned import events, with a progress bar on a terminal, lines every 5 s otherwise."""
    from duly.services.context import ServiceContext, TemporalProvider
    from duly.services.errors import ServiceError
    from duly.sources.importer import deliver
    from duly.store.db import session_factory
    from duly.temporal_client import connect

    settings = settings_with(definitions=definitions, temporal_address=temporal)
    quiet_logging()
    engine, live = open_published_or_exit(settings)
    context = ServiceContext(
        settings,
        live.current(),
        session_factory(engine),
        TemporalProvider(lambda: connect(settings=settings)),
        live,
    )
    total, sent, started = len(planned), [0], clock()
    last = [started]

    def line_progress(count: int) -> None:
        sent[0] += count
        if clock() - last[0] >= 5 or sent[0] == total:
            last[0] = clock()
            rate = sent[0] / max(clock() - started, 1e-9)
            typer.echo(f"imported {sent[0]}/{total} ({rate:.0f}/s)", err=True)

    async def go() -> Any:
        if terminal:
            with typer.progressbar(length=total, label="importing", file=None) as bar:
                return await deliver(context, planned, bar.update)
        return await deliver(context, planned, line_progress)

    try:
        done = run(go())
    except ServiceError as exc:
        typer.echo(f"{exc.message} (importing again sends only what was not received)", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    typer.echo(
        f"imported: {counted(done.accepted, 'instance')} started or reached, "
        f"{counted(done.duplicates, 'record')} received before"
    )
