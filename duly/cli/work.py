"""People's work, as a user with that user's permissions: tasks and alerts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from duly.cli.common import (
    ActingOption,
    DefinitionsOption,
    JsonOption,
    TemporalOption,
    Work,
    print_json,
    say_if_more,
    with_work,
    zone_chooser,
)
from duly.tables import span, table
from duly.timefmt import local

app = typer.Typer()


def typed_fields(pairs: list[str], kinds: dict[str, str]) -> dict[str, Any]:
    """`k=v` pairs typed by the task's fields (name -> type).

    A text or choice field takes the text as written (`timeline=2026` is "2026"); any other
    value is read as JSON when it can be (`budget=25000` is a number).
    """
    values = _field_values(pairs)
    written = {n.strip(): text for n, _, text in (pair.partition("=") for pair in pairs)}
    return {
        name: written[name] if kinds.get(name) in ("text", "choice") else value
        for name, value in values.items()
    }


def _field_values(pairs: list[str]) -> dict[str, Any]:
    """`k=v` pairs; a value that reads as JSON (25000, true) is taken as such, else as text."""
    fields: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name.strip():
            typer.echo(f"--field {pair!r} is not name=value", err=True)
            raise typer.Exit(1)
        try:
            fields[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            fields[name.strip()] = text
    return fields


@app.command()
def complete(
    task: Annotated[
        str, typer.Argument(help="The task id, as `duly tasks` or `duly state` shows it.")
    ],
    outcome: Annotated[str, typer.Argument(help="One of the task's outcomes.")],
    note: Annotated[str | None, typer.Option("--note", help="A note for the record.")] = None,
    field: Annotated[
        list[str] | None,
        typer.Option("--field", metavar="NAME=VALUE", help="A field of the task; repeatable."),
    ] = None,
    acting: ActingOption = None,
    definitions: DefinitionsOption = Path("definitions"),
    temporal: TemporalOption = None,
) -> None:
    """Complete an open task with an outcome (and the fields it asks for)."""
    from duly.services import tasks
    from duly.services.schemas import CompleteTaskRequest

    _field_values(field or [])  # a malformed pair is refused before anything is opened

    def go(work: Work) -> str:
        from duly.store.models import Task

        with work.context.read() as session:
            row = session.get(Task, task)
        typed = typed_fields(field or [], dict(row.fields) if row is not None else {})
        request = CompleteTaskRequest(outcome=outcome, note=note, fields=typed)
        result = work.run(tasks.complete_task(work.context, work.principal, task, request))
        return f"completed {result.task_id} ({result.outcome}); next step: {result.next_step}"

    typer.echo(with_work(go, acting, definitions, temporal))


@app.command()
def reassign(
    task: Annotated[str, typer.Argument(help="The task id, as `duly tasks` shows it.")],
    to: Annotated[str, typer.Argument(help="The user id of the new assignee.")],
    acting: ActingOption = None,
    definitions: DefinitionsOption = Path("definitions"),
    temporal: TemporalOption = None,
) -> None:
    """Hand an open task to someone else (managers: within their teams; admins: anyone)."""
    from duly.services import tasks

    def go(work: Work) -> str:
        result = work.run(tasks.reassign_task(work.context, work.principal, task, to))
        return f"reassigned {result.task_id} to {result.assignee} (was {result.previous or '-'})"

    typer.echo(with_work(go, acting, definitions, temporal))


@app.command()
def tasks(
    acting: ActingOption = None,
    everyone: Annotated[
        bool,
        typer.Option("--all", help="Every task the user may see, not only theirs."),
    ] = False,
    status: Annotated[
        str, typer.Option("--status", help="open, completed, cancelled or any.")
    ] = "open",
    process: Annotated[str | None, typer.Option("--process", help="Only this process.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200)] = 50,
    as_json: JsonOption = False,
    definitions: DefinitionsOption = Path("definitions"),
) -> None:
    """A user's open tasks, soonest due first, with the business time left.

    Without --as, the first admin's view: every task.
    """
    from duly.services.tasks import list_tasks

    if status not in ("open", "completed", "cancelled", "any"):
        typer.echo(f"--status must be open, completed, cancelled or any, not {status!r}", err=True)
        raise typer.Exit(1)

    def go(work: Work) -> Any:
        with work.context.read() as session:
            return list_tasks(
                session=session,
                principal=work.principal,
                definitions=work.context.definitions,
                scope="all" if everyone or acting is None else "mine",
                status=status,  # type: ignore[arg-type]
                process=process,
                limit=limit,
            )

    page = with_work(go, acting, definitions, None)
    if as_json:
        print_json(page)
        return
    zone_for = zone_chooser(definitions, acting)
    rows = [
        (
            t.id,
            t.title,
            t.assignee,
            local(t.due_at, zone_for(t.process), empty="-"),
            span(t.business_seconds_left),
            " | ".join(t.outcomes),
        )
        for t in page.items
    ]
    typer.echo(
        table(("TASK", "TITLE", "ASSIGNEE", "DUE", "LEFT", "OUTCOMES"), rows, empty="no tasks")
    )
    say_if_more(page.total, len(page.items))


@app.command()
def alerts(
    acting: ActingOption = None,
    state: Annotated[
        str,
        typer.Option(
            "--state",
            help="open (needs action), acknowledged, resolved (its task closed or moved) or all.",
        ),
    ] = "open",
    limit: Annotated[int, typer.Option("--limit", min=1, max=200)] = 50,
    as_json: JsonOption = False,
    definitions: DefinitionsOption = Path("definitions"),
) -> None:
    """Alerts a user may see (their own; a manager's teams'; an admin's all), newest first."""
    from duly.services.alerts import list_alerts

    if state not in ("open", "acknowledged", "resolved", "all"):
        typer.echo(f"--state must be open, acknowledged, resolved or all, not {state!r}", err=True)
        raise typer.Exit(1)

    def go(work: Work) -> Any:
        with work.context.read() as session:
            return list_alerts(
                session=session,
                principal=work.principal,
                state=state,  # type: ignore[arg-type]
                limit=limit,
            )

    page = with_work(go, acting, definitions, None)
    if as_json:
        print_json(page)
        return
    zone_for = zone_chooser(definitions, acting)
    rows = [
        (
            a.id,
            a.level,
            a.recipient,
            local(a.created_at, zone_for(a.process)),
            a.acknowledged_by,
            a.resolution or "",
            a.message,
        )
        for a in page.items
    ]
    headers = ("ID", "LEVEL", "TO", "RAISED", "ACKED BY", "RESOLVED", "MESSAGE")
    typer.echo(table(headers, rows, empty="no alerts"))
    say_if_more(page.total, len(page.items))


@app.command()
def ack(
    alert: Annotated[int, typer.Argument(help="The alert id, as `duly alerts` shows it.")],
    acting: ActingOption = None,
    as_json: JsonOption = False,
    definitions: DefinitionsOption = Path("definitions"),
) -> None:
    """Acknowledge an alert (acknowledging it again changes nothing)."""
    from duly.services.alerts import ack_alert

    def go(work: Work) -> Any:
        with work.context.write() as session:
            return ack_alert(session=session, principal=work.principal, alert_id=alert)

    done = with_work(go, acting, definitions, None)
    if as_json:
        print_json(done)
        return
    typer.echo(
        f"alert {done.id} acknowledged by {done.acknowledged_by} at "
        f"{local(done.acknowledged_at, zone_chooser(definitions, acting)(done.process))}"
    )
