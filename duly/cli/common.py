"""What the groups of commands share: options, settings, running work, acting as a user."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Coroutine
from datetime import tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from duly.language.errors import DefinitionError
from duly.language.loader import Definitions, load_definitions
from duly.settings import Settings

if TYPE_CHECKING:
    from duly.services.auth import Principal
    from duly.services.context import ServiceContext


DefinitionsOption = Annotated[
    Path,
    typer.Option(
        "--definitions",
        envvar="DULY_DEFINITIONS",
        help="Folder of definitions (processes/, calendars/, monitors/, org.yaml).",
    ),
]


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


VerboseOption = Annotated[
    bool,
    typer.Option(
        "--verbose", help="Print the engine's log of the demo here, not in <data dir>/demo.log."
    ),
]


T = TypeVar("T")


def load_or_exit(definitions: Path) -> Definitions:
    """Load the definitions or print every problem and exit 1."""
    try:
        return load_definitions(definitions)
    except DefinitionError as exc:
        typer.echo(exc.report(), err=True)
        raise typer.Exit(1) from None


def counted(number: int, one: str, many: str | None = None) -> str:
    """`1 process`, `3 processes`."""
    if number == 1:
        return f"1 {one}"
    return f"{number} {many or (one + 'es' if one.endswith('s') else one + 's')}"


def settings_with(**overrides: Any) -> Settings:
    """The environment's settings, with the options given on the command line on top."""
    return Settings(**{name: value for name, value in overrides.items() if value is not None})


def quiet_logging() -> None:
    """Commands that print their own result log only warnings, to stderr (JSON if so set)."""
    from duly.logs import configure

    configure(settings_with(), level=logging.WARNING)


def json_object(text: str, what: str = "--data") -> dict[str, Any]:
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


async def _settled(work: Coroutine[Any, Any, T]) -> T:
    """Await `work`, then let the Temporal SDK settle before the process exits."""
    from duly.temporal_client import settle

    try:
        return await work
    finally:
        await settle()


def run(work: Coroutine[Any, Any, T]) -> T:
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


def quiet_demo_logs() -> None:
    """The demo's CRM handoff webhook fails by design; keep its retries out of the terminal."""
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)


def zone_chooser(definitions: Path, acting: str | None) -> Callable[[str | None], tzinfo]:
    """`zone_for(process)` for who the command acts as: theirs, else the process's calendar zone.

    The default actor is the first admin, as in `with_work` (see `duly.timefmt`).
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
        return run(work)


def with_work(
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

    settings = settings_with(definitions=definitions, temporal_address=temporal)
    quiet_logging()
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


def print_json(value: Any) -> None:
    """Print a model (or a list of them) as indented JSON."""
    typer.echo(json.dumps(jsonable(value), indent=2))


def jsonable(value: Any) -> Any:
    """Pydantic models (and lists of them) as JSON-ready data."""
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    return value


def say_if_more(total: int, shown: int) -> None:
    """Say on stderr when a listing shows fewer rows than match."""
    if total > shown:
        typer.echo(f"({shown} of {total}; use --limit or --json)", err=True)


def database(settings: Settings) -> tuple[Any, str]:
    """An engine on the settings' database, and its URL without the password (for messages)."""
    from sqlalchemy import make_url

    from duly.store.db import make_engine

    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    return make_engine(settings.database_url), shown


def unreachable(shown: str, exc: Exception) -> typer.Exit:
    """Say the database cannot be reached, and why; the exit to raise."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
    typer.echo(
        f"cannot reach the database at {shown}: {reason}\n"
        "Check DULY_DATABASE_URL and that the database server is running.",
        err=True,
    )
    return typer.Exit(1)


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
