"""The `duly` command."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Coroutine
from datetime import datetime, tzinfo
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from duly.language.diagram import mermaid
from duly.language.errors import DefinitionError
from duly.language.loader import Definitions, load_definitions, load_paths
from duly.language.schema import json_schema
from duly.settings import Settings, web_url
from duly.tables import span, table, when
from duly.timefmt import local

if TYPE_CHECKING:
    from duly.services.auth import Principal
    from duly.services.context import ServiceContext

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
    from duly.published import republished_warnings

    warnings = republished_warnings(_settings().database_url, loaded)
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


def counted(number: int, one: str, many: str | None = None) -> str:
    """`1 process`, `3 processes`."""
    if number == 1:
        return f"1 {one}"
    return f"{number} {many or (one + 'es' if one.endswith('s') else one + 's')}"


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


# --- running processes: the stack, the worker, and talking to Temporal ------------------------

TemporalOption = Annotated[
    str | None,
    typer.Option(
        "--temporal",
        envvar="DULY_TEMPORAL_ADDRESS",
        metavar="ADDRESS",
        help="host:port of Temporal (default 127.0.0.1:7233).",
        show_default=False,
    ),
]
DataOption = Annotated[
    str,
    typer.Option("--data", metavar="JSON", help="The data, a JSON object: '{\"quote\": {...}}'."),
]

T = TypeVar("T")


def _settings(**overrides: Any) -> Settings:
    """The environment's settings, with the options given on the command line on top."""
    return Settings(**{name: value for name, value in overrides.items() if value is not None})


def _quiet_logging() -> None:
    """Commands that print their own result log only warnings, to stderr (JSON if so set)."""
    from duly.logs import configure

    configure(_settings(), level=logging.WARNING)


def _json_object(text: str, what: str = "--data") -> dict[str, Any]:
    """Parse a JSON object from the command line, or exit 1 saying what is wrong.

    The object is event data: it must keep duly's event limits (`duly.event_limits`), checked
    here before anything is started or sent.
    """
    from duly.event_limits import EventLimitError, check_event, parse_json

    try:
        value = parse_json(text, loc=("data",), level=1)
        if isinstance(value, dict):
            check_event(value)
    except EventLimitError as exc:
        typer.echo(f"{what} is over duly's limits: {exc}", err=True)
        raise typer.Exit(1) from None
    except ValueError as exc:
        typer.echo(f"{what} is not valid JSON: {exc}", err=True)
        raise typer.Exit(1) from None
    if not isinstance(value, dict):
        typer.echo(f'{what} must be a JSON object, e.g. \'{{"quote": {{"id": "Q-1"}}}}\'', err=True)
        raise typer.Exit(1)
    return value


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


async def _settled(work: Coroutine[Any, Any, T]) -> T:
    """Await `work`, then let the Temporal SDK settle before the process exits."""
    from duly.temporal_client import settle

    try:
        return await work
    finally:
        await settle()


def _run(work: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; a user-facing failure prints a plain message and exits 1."""
    from temporalio.service import RPCError

    from duly.client import ClientError
    from duly.stack import StackError
    from duly.store.crud import VersionConflicts
    from duly.temporal_binaries import BinaryNotFoundError
    from duly.temporal_client import TemporalSettingsError, TemporalUnavailable

    try:
        return asyncio.run(_settled(work))
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except DefinitionError as exc:
        typer.echo(exc.report(), err=True)
    except (
        ClientError,
        StackError,
        TemporalUnavailable,
        TemporalSettingsError,
        BinaryNotFoundError,
        VersionConflicts,
    ) as exc:
        typer.echo(str(exc), err=True)
    except RPCError as exc:
        typer.echo(f"Temporal refused the request: {exc.message}", err=True)
    except OSError as exc:
        typer.echo(f"duly could not continue: {exc}", err=True)
    raise typer.Exit(1)


VerboseOption = Annotated[
    bool,
    typer.Option(
        "--verbose", help="Print the engine's log of the demo here, not in <data dir>/demo.log."
    ),
]


@app.command()
def up(
    definitions: DefinitionsOption = Path("definitions"),
    temporal: TemporalOption = None,
    ui_port: Annotated[
        int | None,
        typer.Option(
            "--ui-port",
            envvar="DULY_TEMPORAL_UI_PORT",
            help="Port of the Temporal Web UI (default 8233).",
            show_default=False,
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="DULY_DATA_DIR",
            help="Where the SQLite files live (default data).",
            show_default=False,
        ),
    ] = None,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo",
            help="First fill an empty database with weeks of history (see `duly demo`).",
        ),
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Run everything on this machine (Temporal dev server, worker) until Ctrl-C.

    Instances, timers and data persist in the data folder: the next `duly up` resumes them.
    """
    from duly.stack import run_stack
    from duly.worker import configure_logging

    settings = _settings(
        definitions=definitions,
        temporal_address=temporal,
        temporal_ui_port=ui_port,
        data_dir=data_dir,
    )
    configure_logging(settings)
    if demo:
        _quiet_demo_logs()
    _run(run_stack(settings, demo=demo, demo_verbose=verbose))


def _quiet_demo_logs() -> None:
    """The demo's CRM handoff webhook fails by design; keep its retries out of the terminal."""
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)


@app.command()
def demo(
    definitions: DefinitionsOption = Path("definitions"),
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="DULY_DATA_DIR",
            help="Where the SQLite database lives (default data).",
            show_default=False,
        ),
    ] = None,
    weeks: Annotated[
        int, typer.Option("--weeks", min=1, max=26, help="Weeks of new work to simulate.")
    ] = 6,
    seed: Annotated[int, typer.Option("--seed", help="The same seed writes the same history.")] = 1,
    scale: Annotated[
        float, typer.Option("--scale", help="More (2.0) or less (0.3) work a week than usual.")
    ] = 1.0,
    reset: Annotated[
        bool, typer.Option("--reset", help="Delete the instances already in the database first.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Add to a database that already has instances.")
    ] = False,
    verbose: VerboseOption = False,
) -> None:
    """Fill a fresh install with weeks of history, run by the real engine on simulated time.

    The shipped processes run for org.yaml's team on Temporal's time-skipping server.

    Reps work at their own pace: one reliable, one often late, one inconsistent...

    Nothing is sent: process emails go to an in-memory sink, notifications are marked unsent.
    """
    from duly.demo import DemoRefused, run_demo
    from duly.demo_progress import reporter
    from duly.logs import configure

    settings = _settings(definitions=definitions, data_dir=data_dir)
    loaded = load_or_exit(definitions)
    log_file = None if verbose else demo_log(settings)
    configure(settings, log_file=log_file)
    _quiet_demo_logs()
    if log_file is not None:
        typer.echo(f"the engine's log goes to {log_file} (--verbose prints it here)", err=True)
    progress = reporter()
    try:
        result = _run(
            run_demo(
                settings,
                loaded,
                weeks=weeks,
                seed=seed,
                scale=scale,
                reset=reset,
                force=force,
                progress=progress,
            )
        )
    except DemoRefused as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    finally:
        progress.close()
    typer.echo(result.summary())


def demo_log(settings: Settings) -> Path:
    """Where `duly demo` (and `duly up --demo`) write the engine's log: <data dir>/demo.log."""
    return settings.data_dir / "demo.log"


class SummaryFormat(StrEnum):
    """How `summary` prints."""

    text = "text"
    html = "html"
    json = "json"


@app.command()
def summary(
    week: Annotated[
        str | None,
        typer.Option("--week", help="The ISO week, e.g. 2026-W48 (default: last week)."),
    ] = None,
    manager: Annotated[
        str | None, typer.Option("--manager", help="Only this manager (default: every one).")
    ] = None,
    send: Annotated[
        bool,
        typer.Option(
            "--send",
            help="Send it through each manager's channels (once per week), via the worker.",
        ),
    ] = False,
    output: Annotated[SummaryFormat, typer.Option("--format")] = SummaryFormat.text,
    definitions: DefinitionsOption = Path("definitions"),
    temporal: TemporalOption = None,
) -> None:
    """Each manager's weekly summary: attainment against the goal, who slipped, open breaches.

    With --send the running worker sends it on each manager's channels, once per week.
    """
    from sqlmodel import Session

    from duly.store.types import utc_now
    from duly.summary import SummaryError, build_summary, last_week, managers, parse_week

    loaded = load_or_exit(definitions)
    settings = _settings(definitions=definitions, temporal_address=temporal)
    _quiet_logging()
    week = week or last_week(utc_now())
    try:
        parse_week(week)
    except SummaryError as exc:
        typer.echo(f"--week: {exc}", err=True)
        raise typer.Exit(1) from None
    chosen = [manager] if manager else managers(loaded)
    if manager and manager not in managers(loaded):
        known = ", ".join(managers(loaded))
        typer.echo(
            f"--manager: {manager!r} manages no team in org.yaml (managers: {known})", err=True
        )
        raise typer.Exit(1)
    if send:
        _run(_send_summary(settings, week, chosen if manager else None))
        return
    engine, _ = _database(settings)
    link = web_url(settings)
    try:
        with Session(engine) as session:
            made = [build_summary(session, loaded, m, week, link=link) for m in chosen]
    except SummaryError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    if output is SummaryFormat.json:
        _print_json([item.model_dump(mode="json") for item in made])
        return
    for item in made:
        typer.echo(f"Subject: {item.subject}\n")
        typer.echo(item.html() if output is SummaryFormat.html else item.text())


async def _send_summary(settings: Settings, week: str, chosen: list[str] | None) -> None:
    from activities.summary import WeeklySummaryResult
    from duly.summary import start_week
    from duly.temporal_client import connect
    from workflows.summary import weekly_summary_id

    client = await connect(settings=settings)
    started = await start_week(client, week, task_queue=settings.task_queue, managers=chosen)
    if not started:
        typer.echo(
            f"the summary of {week} was already sent ({weekly_summary_id(week, chosen)}); "
            "each manager gets it once a week"
        )
        return
    handle = client.get_workflow_handle(
        weekly_summary_id(week, chosen), result_type=WeeklySummaryResult
    )
    result = await handle.result()
    for who, channels in sorted(result.queued.items()):
        typer.echo(f"{who}: queued on {', '.join(channels) or 'no channel (already queued)'}")


@app.command()
def worker(
    definitions: DefinitionsOption = Path("definitions"),
    temporal: TemporalOption = None,
) -> None:
    """Run the worker alone, against a Temporal that is already running."""
    from duly import worker as worker_module

    settings = _settings(definitions=definitions, temporal_address=temporal)
    worker_module.configure_logging(settings)
    _run(worker_module.main(settings=settings))


@app.command()
def web(
    definitions: DefinitionsOption = Path("definitions"),
    temporal: TemporalOption = None,
) -> None:
    """Run the web app alone (API, pages, /metrics) on DULY_WEB_HOST:DULY_WEB_PORT.

    It migrates the database at start and reaches Temporal on first use; run as many as you
    like behind a proxy.
    """
    from sqlalchemy.exc import OperationalError

    from duly.logs import configure

    settings = _settings(definitions=definitions, temporal_address=temporal)
    configure(settings)
    try:
        _run(_serve_web(settings))
    except OperationalError as exc:
        _, shown = _database(settings)
        raise _unreachable(shown, exc) from None


async def _serve_web(settings: Settings) -> None:
    import structlog

    from duly.api.app import create_app
    from duly.api.server import serve
    from duly.worker import stop_on_signals

    app = create_app(settings)
    stop = asyncio.Event()
    restore = stop_on_signals(stop)
    url = f"http://{settings.web_host}:{settings.web_port}"
    structlog.get_logger(__name__).info("web_serving", url=url, metrics=f"{url}/metrics")
    try:
        await serve(app, settings.web_host, settings.web_port, stop)
    finally:
        restore()


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

    values = _json_object(data)
    settings = _settings(definitions=definitions, temporal_address=temporal)
    _quiet_logging()
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

    typer.echo(f"started {_run(go())}")


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
        id=id or str(uuid.uuid4()), type=type, data=_json_object(data), occurred_at=occurred
    )
    settings = _settings(definitions=definitions, temporal_address=temporal)
    _quiet_logging()
    loaded = published_or_exit(settings)

    async def go() -> list[str]:
        client = await connect(settings=settings)
        return await send_event(client, loaded, message, task_queue=settings.task_queue)

    touched = _run(go())
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

    settings = _settings(definitions=definitions, temporal_address=temporal)
    _quiet_logging()

    async def go() -> str:
        client = await connect(settings=settings)
        return (await instance_state(client, instance)).model_dump_json(indent=2)

    typer.echo(_run(go()))


# --- people's work: tasks, alerts, instances, tokens ---------------------------------------------

ActingOption = Annotated[
    str | None,
    typer.Option(
        "--as",
        "--by",
        metavar="USER",
        help="The user to act as, with their permissions (default: the first admin in org.yaml).",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON, for scripts.")]


def _zones(definitions: Path, acting: str | None) -> Callable[[str | None], tzinfo]:
    """`zone_for(process)` for who the command acts as: theirs, else the process's calendar zone.

    The default actor is the first admin, as in `_with_work` (see `duly.timefmt`).
    """
    from duly import timefmt

    loaded = load_or_exit(definitions)
    users = loaded.org.users
    who = acting or next((u for u in sorted(users) if users[u].role == "admin"), None)
    own = users[who].timezone if who in users else None
    return timefmt.chooser({n: p.calendar.timezone for n, p in loaded.processes.items()}, own)


class Work:
    """What a command acting for a user works with: the API's context, the user, a loop."""

    def __init__(self, context: ServiceContext, principal: Principal) -> None:
        self.context = context
        self.principal = principal

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Run a service coroutine to its end (a Temporal client is connected if it needs one)."""
        return _run(work)


def _with_work(
    go: Callable[[Work], T], acting: str | None, definitions: Path, temporal: str | None
) -> T:
    """Open the database (creating tables and syncing the org), find the user, run `go`.

    A refusal (`ServiceError`) prints its message and exits 1.
    """
    from duly.services.auth import default_admin, principal_of
    from duly.services.context import ServiceContext, TemporalProvider
    from duly.services.errors import ServiceError
    from duly.store.db import session_factory
    from duly.temporal_client import connect

    settings = _settings(definitions=definitions, temporal_address=temporal)
    _quiet_logging()
    engine, live = open_published_or_exit(settings)
    try:
        context = ServiceContext(
            settings,
            live.current(),
            session_factory(engine),
            TemporalProvider(lambda: connect(settings=settings)),
            live,
        )
        with context.read() as session:
            principal = (
                principal_of(session=session, user_id=acting)
                if acting
                else default_admin(session=session)
            )
        return go(Work(context, principal))
    except ServiceError as exc:
        typer.echo(exc.message, err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(jsonable(value), indent=2))


def jsonable(value: Any) -> Any:
    """Pydantic models (and lists of them) as JSON-ready data."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    return value


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

    typer.echo(_with_work(go, acting, definitions, temporal))


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

    typer.echo(_with_work(go, acting, definitions, temporal))


@app.command()
def token(
    user: Annotated[str, typer.Argument(help="The user id (a key under users: in org.yaml).")],
    definitions: DefinitionsOption = Path("definitions"),
) -> None:
    """Issue a new API token for a user (replacing their old one) and print it, once.

    Only its hash is stored: keep the printed token; run this again to replace a lost one.
    The user's web sessions end with the old token: they sign in again with the new one.
    """
    from duly.services.auth import issue_token

    def go(work: Work) -> str:
        with work.context.write() as session:
            return issue_token(session=session, user_id=user)

    issued = _with_work(go, None, definitions, None)
    typer.echo(issued)
    typer.echo(
        f"API token for {user}, shown once; send it as 'Authorization: Bearer <token>' "
        "(their web sessions are signed out)",
        err=True,
    )


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

    page = _with_work(go, acting, definitions, None)
    if as_json:
        _print_json(page)
        return
    zone_for = _zones(definitions, acting)
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
    _more(page.total, len(page.items))


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

    page = _with_work(go, acting, definitions, None)
    if as_json:
        _print_json(page)
        return
    zone_for = _zones(definitions, acting)
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
    _more(page.total, len(page.items))


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

    done = _with_work(go, acting, definitions, None)
    if as_json:
        _print_json(done)
        return
    typer.echo(
        f"alert {done.id} acknowledged by {done.acknowledged_by} at "
        f"{local(done.acknowledged_at, _zones(definitions, acting)(done.process))}"
    )


@app.command()
def monitors(
    as_json: JsonOption = False,
    definitions: DefinitionsOption = Path("definitions"),
) -> None:
    """Each monitor: its schedule, its line, its state (ok or alerting) and its last check."""
    from duly.monitors.status import monitor_statuses
    from duly.store.crud import VersionConflicts
    from duly.store.db import session_factory
    from duly.worker import prepare_database

    loaded = load_or_exit(definitions)
    _quiet_logging()
    try:
        engine = prepare_database(_settings(definitions=definitions), loaded)
    except VersionConflicts as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    try:
        with session_factory(engine)() as session:
            statuses = monitor_statuses(session=session, definitions=loaded)
    finally:
        engine.dispose()
    if as_json:
        _print_json(statuses)
        return
    rows = [
        (m.monitor, m.schedule, m.measure, m.state, _value(m.last_value), m.last_checked_at)
        for m in statuses
    ]
    headers = ("MONITOR", "SCHEDULE", "MEASURE", "STATE", "LAST VALUE", "LAST CHECK")
    typer.echo(table(headers, rows, empty="no monitors in definitions/monitors/"))


def _value(value: float | None) -> str | None:
    """A measured value: 41 rather than 41.0, one decimal for a share."""
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


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

    page = _with_work(go, acting, definitions, None)
    if as_json:
        _print_json(page)
        return
    zone_for = _zones(definitions, acting)
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
    _more(page.total, len(page.items))


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

    detail = _with_work(go, acting, definitions, temporal)
    if as_json:
        _print_json(detail)
        return
    row = detail.instance
    zone = _zones(definitions, acting)(row.process)

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


def _more(total: int, shown: int) -> None:
    if total > shown:
        typer.echo(f"({shown} of {total}; use --limit or --json)", err=True)


db_app = typer.Typer(help="duly's database: migrations (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")


def _database(settings: Settings) -> tuple[Any, str]:
    """An engine on the settings' database, and its URL without the password (for messages)."""
    from sqlalchemy import make_url

    from duly.store.db import make_engine

    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    return make_engine(settings.database_url), shown


def _unreachable(shown: str, exc: Exception) -> typer.Exit:
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    typer.echo(
        f"cannot reach the database at {shown}: {reason}\n"
        "Check DULY_DATABASE_URL and that the database server is running.",
        err=True,
    )
    return typer.Exit(1)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[
        str, typer.Argument(help="The revision to migrate to (default: the newest).")
    ] = "head",
) -> None:
    """Migrate duly's database (DULY_DATABASE_URL) to the newest schema.

    Safe to run at every deploy and from several machines at once; the worker and the web app
    run it themselves at start.
    """
    from sqlalchemy.exc import OperationalError

    from duly.store import migrations

    _quiet_logging()
    engine, shown = _database(_settings())
    try:
        reached = migrations.upgrade(engine, revision)
    except OperationalError as exc:
        raise _unreachable(shown, exc) from None
    finally:
        engine.dispose()
    typer.echo(f"{shown} is at revision {reached}")


@db_app.command("current")
def db_current() -> None:
    """Print the revision duly's database is at, and whether it is the newest."""
    from sqlalchemy.exc import OperationalError

    from duly.store import migrations

    _quiet_logging()
    engine, shown = _database(_settings())
    try:
        at = migrations.current(engine)
    except OperationalError as exc:
        raise _unreachable(shown, exc) from None
    finally:
        engine.dispose()
    head = migrations.head()
    if at is None:
        typer.echo(f"{shown}: not migrated (the newest revision is {head}; run `duly db upgrade`)")
    elif at == head:
        typer.echo(f"{shown}: {at} (head)")
    else:
        typer.echo(f"{shown}: {at} (the newest is {head}; run `duly db upgrade`)")


@db_app.command("revision")
def db_revision(
    message: Annotated[
        str, typer.Argument(help="What the revision changes, e.g. 'monitor state'.")
    ],
) -> None:
    """Write a new migration: what the models have that the newest revision lacks (developers)."""
    from duly.store import migrations

    _quiet_logging()
    path = migrations.revision(message)
    typer.echo(f"wrote {path}: read it, then `ruff format` it and commit it with the model change")


class ReportName(StrEnum):
    """The reports `duly report` makes."""

    attainment = "attainment"
    durations = "durations"
    outcomes = "outcomes"
    funnel = "funnel"
    backlog = "backlog"
    consistency = "consistency"


class ReportFormat(StrEnum):
    """How `duly report` prints."""

    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def report(
    name: Annotated[
        ReportName, typer.Argument(help="Which report.", case_sensitive=False)
    ] = ReportName.attainment,
    process: Annotated[str | None, typer.Option("--process", help="Only this process.")] = None,
    version: Annotated[
        int | None, typer.Option("--version", min=1, help="Only this version.")
    ] = None,
    step: Annotated[str | None, typer.Option("--step", help="Only this step.")] = None,
    team: Annotated[str | None, typer.Option("--team", help="Only this team.")] = None,
    rep: Annotated[str | None, typer.Option("--rep", help="Only this rep.")] = None,
    by: Annotated[
        str | None, typer.Option("--by", help="Rows per rep, team, step or week.")
    ] = None,
    weeks: Annotated[
        int | None, typer.Option("--weeks", min=1, help="The last N weeks (default 8).")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="From this day or moment (ISO 8601).")
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", help="Before this day or moment (ISO 8601).")
    ] = None,
    output: Annotated[
        ReportFormat, typer.Option("--format", help="table, csv or json.", case_sensitive=False)
    ] = ReportFormat.table,
    acting: Annotated[
        str | None,
        typer.Option(
            "--as",
            metavar="USER",
            help="Whose view (a rep: their own figures; a manager: their teams'). "
            "Default: the first admin in org.yaml.",
            show_default=False,
        ),
    ] = None,
    definitions: DefinitionsOption = Path("definitions"),
) -> None:
    """A report on how consistently processes run.

    Attainment against the goal, durations, outcomes, funnel, backlog or consistency; weeks
    are ISO weeks in the process calendar's time zone (UTC without --process).

    Example: duly report --process quote-follow-up --by rep --weeks 8 --format table
    """
    from pydantic import ValidationError

    from duly.reports import GROUPINGS, ReportQuery, to_csv, to_text
    from duly.services.reports import run_report

    if by is not None and by not in GROUPINGS:
        typer.echo(f"--by must be one of {', '.join(GROUPINGS)}, not {by!r}", err=True)
        raise typer.Exit(1)
    try:
        query = ReportQuery.model_validate(
            {
                "process": process,
                "version": version,
                "step": step,
                "team": team,
                "rep": rep,
                "by": by,
                "weeks": weeks,
                "since": _moment(since, "--since"),
                "until": _moment(until, "--until"),
            }
        )
    except ValidationError as exc:
        problems = (str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        typer.echo("; ".join(problems), err=True)
        raise typer.Exit(1) from None

    def go(work: Work) -> Any:
        with work.context.read() as session:
            return run_report(
                session=session,
                principal=work.principal,
                definitions=work.context.definitions,
                name=name.value,
                query=query,
            )

    made = _with_work(go, acting, definitions, None)
    if output is ReportFormat.json:
        typer.echo(made.model_dump_json(indent=2))
    elif output is ReportFormat.csv:
        typer.echo(to_csv(made), nl=False)
    else:
        scope = made.scope
        typer.echo(
            f"{name.value}: {scope.process or 'all processes'}, "
            f"{when(scope.since)} to {when(scope.until)} ({len(scope.weeks)} weeks, "
            f"{scope.timezone})" + (f", goal {scope.goal:.0%}" if scope.goal is not None else "")
        )
        typer.echo(to_text(made))


def _moment(text: str | None, option: str) -> Any:
    """An ISO date (midnight UTC) or moment (UTC when it names no zone), for report periods."""
    from datetime import UTC, datetime

    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        typer.echo(
            f"{option} must be a date or moment like 2026-11-02 or 2026-11-02T09:00Z", err=True
        )
        raise typer.Exit(1) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- sources: CRM webhooks in, and backfill from a CRM export ---------------------------------


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
    from datetime import UTC, datetime

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

    settings = _settings(definitions=definitions, temporal_address=temporal)
    _quiet_logging()
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
        done = _run(go())
    except ServiceError as exc:
        typer.echo(f"{exc.message} (importing again sends only what was not received)", err=True)
        raise typer.Exit(1) from None
    finally:
        engine.dispose()
    typer.echo(
        f"imported: {counted(done.accepted, 'instance')} started or reached, "
        f"{counted(done.duplicates, 'record')} received before"
    )


@app.command("calendar-url")
def calendar_url(
    user: Annotated[str, typer.Argument(help="The user id (a key under users: in org.yaml).")],
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Make a new URL; the old one stops working.")
    ] = False,
    definitions: DefinitionsOption = Path("definitions"),
) -> None:
    """Print a user's secret calendar-feed URL (their open tasks at their due times, .ics).

    Anyone with the URL sees the user's open task titles: share it like a password, and
    `--rotate` it when it leaked.
    """
    from duly.calendar_feed import ensure_feed, feed_url
    from duly.services.auth import principal_of

    def go(work: Work) -> str:
        with work.context.write() as session:
            principal_of(session=session, user_id=user)  # an active user, or a clear refusal
            generation = ensure_feed(session=session, user_id=user, rotate=rotate)
        return feed_url(work.context.settings, user, generation)

    typer.echo(_with_work(go, None, definitions, None))
    if rotate:
        typer.echo(f"{user}'s previous calendar URL no longer works", err=True)


# --- the published set ---------------------------------------------------------------------------


def open_published_or_exit(settings: Settings) -> tuple[Any, Any]:
    """The store and its published definitions; exit 1 with the reason when neither is usable.

    Commands that start or act on instances use what is published, never the folder as edited
    (`duly publish` makes an edit live); a database nobody published to gets the folder first.
    """
    from duly import published
    from duly.store.crud import VersionConflicts

    try:
        engine, live, current = published.open_published(
            settings.database_url, settings.definitions
        )
    except DefinitionError as exc:
        typer.echo(exc.report(), err=True)
        raise typer.Exit(1) from None
    except VersionConflicts as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    if published.folder_differs(settings.definitions, current):
        assert current is not None
        typer.echo(
            f"note: {settings.definitions} differs from published revision {current.revision}; "
            "`duly publish` makes it live",
            err=True,
        )
    return engine, live


def published_or_exit(settings: Settings) -> Definitions:
    """The published definitions (see `open_published_or_exit`)."""
    engine, live = open_published_or_exit(settings)
    try:
        definitions: Definitions = live.current()
    finally:
        engine.dispose()
    return definitions


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

    settings = _settings(definitions=definitions)
    _quiet_logging()
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

    _with_work(go, acting, definitions, temporal)


class SimulateFormat(StrEnum):
    """How `simulate` prints."""

    table = "table"
    csv = "csv"
    json = "json"


@app.command()
def simulate(
    scenario: Annotated[Path, typer.Argument(help="A scenario file (definitions/scenarios/).")],
    against: Annotated[
        Path | None, typer.Option("--against", help="A second scenario, shown side by side.")
    ] = None,
    weeks: Annotated[
        int | None, typer.Option("--weeks", min=1, max=26, help="Overrides the scenario's weeks.")
    ] = None,
    runs: Annotated[
        int, typer.Option("--runs", min=1, max=50, help="Runs, each its own seed.")
    ] = 3,
    seed: Annotated[int, typer.Option("--seed", help="The first run's seed.")] = 1,
    output: Annotated[
        SimulateFormat, typer.Option("--format", help="table, csv or json.")
    ] = SimulateFormat.table,
    svg: Annotated[
        Path | None, typer.Option("--svg", help="Also write the attainment chart here.")
    ] = None,
    definitions: DefinitionsOption = Path("definitions"),
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            envvar="DULY_DATA_DIR",
            help="Where the live SQLite database (read only, for habits) lives.",
            show_default=False,
        ),
    ] = None,
) -> None:
    """What if: run a scenario on the real engine with the team's measured habits.

    Each run uses Temporal's time-skipping server and a throw-away store; the live database is
    only read (habits, recorded arrivals) and nothing is sent.
    """
    from duly.simulate import report
    from duly.simulate.simulation import simulate as run_simulation

    settings = _settings(definitions=definitions, data_dir=data_dir)
    loaded = load_or_exit(definitions)
    _quiet_logging()
    _quiet_demo_logs()

    def progress(done: int, total: int) -> None:
        typer.echo(f"run {done}/{total} done", err=True)

    try:
        first = _run(
            run_simulation(
                scenario, settings, loaded, runs=runs, seed=seed, weeks=weeks, progress=progress
            )
        )
        second = (
            _run(
                run_simulation(
                    against, settings, loaded, runs=runs, seed=seed, weeks=weeks, progress=progress
                )
            )
            if against is not None
            else None
        )
    except DefinitionError as exc:
        typer.echo(exc.report(), err=True)
        raise typer.Exit(1) from None
    other = second.summary if second else None
    other_name = second.name if second else None
    seconds = first.seconds + (second.seconds if second else 0.0)
    instances = first.instances + (second.instances if second else 0)
    typer.echo(
        f"simulated {instances} instances in {seconds:.1f} s "
        f"({instances / max(seconds, 1e-9):.1f} instances/s)",
        err=True,
    )
    if output is SimulateFormat.csv:
        typer.echo(report.as_csv(first.summary, other), nl=False)
    elif output is SimulateFormat.json:
        typer.echo(report.as_json(first.name, first.summary, first.fit_rows, other_name, other))
    else:
        typer.echo(report.as_table(first.name, first.summary, first.fit_rows, other_name, other))
    if svg is not None:
        svg.write_text(str(report.as_svg(first.name, first.summary, other_name, other)) + "\n")
        typer.echo(f"chart written to {svg}", err=True)
