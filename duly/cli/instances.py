"""Commands on instances: start them, send them events, read their state and history."""

from __future__ import annotations

import uuid
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from duly.cli.common import (
    ActingOption,
    DataOption,
    DefinitionsOption,
    JsonOption,
    TemporalOption,
    Work,
    counted,
    json_object,
    print_json,
    published_or_exit,
    quiet_logging,
    run,
    say_if_more,
    settings_with,
    with_work,
    zone_chooser,
)
from duly.language.loader import Definitions
from duly.settings import Settings
from duly.tables import table, when
from duly.timefmt import local

app = typer.Typer()


@app.command()
def start(
    process: Annotated[str, typer.Argument(help="The process id, e.g. quote-follow-up.")],
    data: DataOption = "{}",
    definitions: DefinitionsOption = Path("definitions"),
    temporal: TemporalOption = None,
) -> None:
    """Start an instance of a process on data; its business key comes from the data."""
    from duly.client import MissingKey, business_key, start_instance
    from duly.temporal_client import connect

    values = json_object(data)
    settings = settings_with(definitions=definitions, temporal_address=temporal)
    quiet_logging()
    loaded = published_or_exit(settings)

    if process not in loaded.processes:
        known = ", ".join(sorted(loaded.processes))
        typer.echo(f"no process '{process}' (known: {known})", err=True)
        raise typer.Exit(1)
    try:
        business_key(loaded.processes[process], values)
    except MissingKey as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None

    async def go() -> str:
        client = await connect(settings=settings)
        return await start_instance(client, loaded, process, values, task_queue=settings.task_queue)

    typer.echo(f"started {run(go())}")


@app.command()
def event(
    type: Annotated[str, typer.Argument(help="The event type, e.g. quote.accepted.")],
    data: DataOption = "{}",
    id: Annotated[
        str | None,
        typer.Option(
            "--id", help="The event id; redelivering an id is harmless (default: a new uuid)."
        ),
    ] = None,
    definitions: DefinitionsOption = Path("definitions"),
    temporal: TemporalOption = None,
    occurred_at: Annotated[
        str | None,
        typer.Option(
            "--occurred-at",
            help="When it happened at the source, ISO 8601 with an offset "
            "(2026-12-01T14:05:00-05:00); SLA clocks count from then. Default: now.",
        ),
    ] = None,
) -> None:
    """Send an event: start the instances it triggers, deliver it to the live ones it concerns."""
    from datetime import datetime

    from duly.client import send_event
    from duly.occurred import check_occurred_at
    from duly.temporal_client import connect
    from workflows.messages import EventInput

    occurred = None
    if occurred_at is not None:
        try:
            occurred = check_occurred_at(datetime.fromisoformat(occurred_at))
        except ValueError as exc:
            typer.echo(f"--occurred-at {occurred_at!r} is refused: {exc}", err=True)
            raise typer.Exit(1) from None
    message = EventInput(
        id=id or str(uuid.uuid4()), type=type, data=json_object(data), occurred_at=occurred
    )
    settings = settings_with(definitions=definitions, temporal_address=temporal)
    quiet_logging()
    loaded = published_or_exit(settings)

    async def go() -> list[str]:
        client = await connect(settings=settings)
        return await send_event(client, loaded, message, task_queue=settings.task_queue)

    touched = run(go())
    for instance_id in touched:
        typer.echo(instance_id)
    if not touched and keep_if_unheard(settings, loaded, message):
        return
    if not touched:
        typer.echo(f"event {message.id} ({type}) reached no instance", err=True)


@app.command()
def state(
    instance: Annotated[
        str,
        typer.Argument(
            help="An instance id as `duly start` prints it, or <process>/<business key> for "
            "the key's latest instance (the same addresses as `duly show`)."
        ),
    ],
    definitions: DefinitionsOption = Path("definitions"),
    temporal: TemporalOption = None,
) -> None:
    """Print an instance's state (step, open task, clocks, data) as JSON."""
    from duly.client import instance_state
    from duly.temporal_client import connect

    settings = settings_with(definitions=definitions, temporal_address=temporal)
    quiet_logging()

    async def go() -> str:
        client = await connect(settings=settings)
        return (await instance_state(client, instance)).model_dump_json(indent=2)

    typer.echo(run(go()))


@app.command()
def instances(
    acting: ActingOption = None,
    process: Annotated[str | None, typer.Option("--process", help="Only this process.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="running, completed or failed.")
    ] = None,
    key: Annotated[str | None, typer.Option("--key", help="Only this business key.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=200)] = 50,
    as_json: JsonOption = False,
    definitions: DefinitionsOption = Path("definitions"),
) -> None:
    """Instances a user may see, newest first."""
    from duly.services.instances import list_instances

    def go(work: Work) -> Any:
        with work.context.read() as session:
            return list_instances(
                session=session,
                principal=work.principal,
                definitions=work.context.definitions,
                process=process,
                status=status,
                key=key,
                limit=limit,
            )

    page = with_work(go, acting, definitions, None)
    if as_json:
        print_json(page)
        return
    zone_for = zone_chooser(definitions, acting)
    rows = [
        (
            i.id,
            i.status,
            i.result,
            local(i.started_at, zone_for(i.process)),
            local(i.ended_at, zone_for(i.process), empty="-"),
        )
        for i in page.items
    ]
    typer.echo(
        table(("INSTANCE", "STATUS", "RESULT", "STARTED", "ENDED"), rows, empty="no instances")
    )
    say_if_more(page.total, len(page.items))


@app.command()
def show(
    instance: Annotated[
        str,
        typer.Argument(
            help="The instance id, as `duly instances` shows it, or <process>/<business key> "
            "for the key's latest instance (the same addresses as `duly state`)."
        ),
    ],
    acting: ActingOption = None,
    as_json: JsonOption = False,
    definitions: DefinitionsOption = Path("definitions"),
    temporal: TemporalOption = None,
) -> None:
    """An instance: where it is now (live, while it runs), its tasks, steps and SLA events."""
    from duly.services.instances import instance_detail

    def go(work: Work) -> Any:
        return work.run(instance_detail(work.context, work.principal, instance))

    detail = with_work(go, acting, definitions, temporal)
    if as_json:
        print_json(detail)
        return
    row = detail.instance
    zone = zone_chooser(definitions, acting)(row.process)

    def when(moment: datetime) -> str:  # the instance's times: its calendar's zone, or mine
        return local(moment, zone)

    lines = [
        f"{row.id}  {row.process} v{row.version}  key {row.business_key}",
        f"status {row.status}"
        + (f" ({row.result})" if row.result else "")
        + f", started {when(row.started_at)}"
        + (f", ended {when(row.ended_at)}" if row.ended_at else ""),
    ]
    if detail.state is not None:
        open_task = detail.state.task
        lines.append(f"now at {detail.state.step or '-'}")
        if open_task is not None:
            lines.append(
                f"open task {open_task.task_id} for {open_task.assignee or '-'}"
                + (f", due {when(open_task.due_at)}" if open_task.due_at else "")
            )
        if detail.state.next_rung is not None:
            rung = detail.state.next_rung
            lines.append(f"next: {rung.action} at {when(rung.at)} ({rung.clock})")
    elif detail.state_error:
        lines.append(f"live state unavailable: {detail.state_error}")
    facts = [
        (f.step, f.visit, f.kind, f.assignee, f.outcome, _sla(f.sla_met), when(f.closed_at))
        for f in detail.facts
    ]
    lines += [
        "",
        "Steps:",
        table(("STEP", "VISIT", "KIND", "ASSIGNEE", "OUTCOME", "SLA", "CLOSED"), facts, empty="-"),
    ]
    events = [(when(e.at), e.clock, e.kind, e.detail) for e in detail.sla_events]
    lines += ["", "SLA events:", table(("AT", "CLOCK", "EVENT", "DETAIL"), events, empty="-")]
    typer.echo("\n".join(lines))


def _sla(met: bool | None) -> str:
    return "-" if met is None else "met" if met else "breached"


def keep_if_unheard(settings: Settings, loaded: Definitions, message: Any) -> bool:
    """Keep an event no published process listens to (as the API does); True if it was kept."""
    from duly import unheard
    from duly.store.db import make_engine, session_factory, write_session

    if unheard.heard(loaded, message.type):
        return False
    engine = make_engine(settings.database_url)
    try:
        with write_session(session_factory(engine)) as session:
            unheard.keep(
                session,
                event_id=message.id,
                event_type=message.type,
                data=message.data,
                occurred_at=message.occurred_at,
            )
    finally:
        engine.dispose()
    typer.echo(f"event {message.id}: {unheard.message(message.type)}", err=True)
    return True


@app.command("unheard")
def unheard_command(
    replay: Annotated[
        bool,
        typer.Option("--replay", help="Replay, once each, those a published process hears now."),
    ] = False,
    definitions: DefinitionsOption = Path("definitions"),
    temporal: TemporalOption = None,
    acting: ActingOption = None,
) -> None:
    """List events no published process listened to (kept, their ids not consumed); replay them."""
    from duly.services import definitions as definition_service
    from duly.services import unheard as unheard_service

    def go(work: Work) -> None:
        definition_service.require_admin(work.principal)
        if replay:
            done = work.run(unheard_service.replay(work.context))
            for item in done:
                typer.echo(f"{item.event_id} {item.type}: {item.status} {' '.join(item.instances)}")
            typer.echo(f"replayed {counted(len(done), 'event')}")
            return
        rows = unheard_service.listed(work.context)
        for row in rows:
            state = (
                f"replayed {row.replay_status}"
                if row.replayed_at
                else ("heard now: --replay" if row.heard_now else "unheard")
            )
            typer.echo(f"{row.id}  {row.type}  x{row.times}  {when(row.received_at)}  {state}")
        if not rows:
            typer.echo("no unheard events")

    with_work(go, acting, definitions, temporal)
