"""Admin commands: API tokens, calendar-feed URLs and the database's migrations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from duly.cli.common import (
    DefinitionsOption,
    Work,
    database,
    quiet_logging,
    settings_with,
    unreachable,
    with_work,
)

app = typer.Typer()


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

    issued = with_work(go, None, definitions, None)
    typer.echo(issued)
    typer.echo(
        f"API token for {user}, shown once; send it as 'Authorization: Bearer <token>' "
        "(their web sessions are signed out)",
        err=True,
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

    typer.echo(with_work(go, None, definitions, None))
    if rotate:
        typer.echo(f"{user}'s previous calendar URL no longer works", err=True)


db_app = typer.Typer(help="duly's database: migrations (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")


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

    quiet_logging()
    engine, shown = database(settings_with())
    try:
        reached = migrations.upgrade(engine, revision)
    except OperationalError as exc:
        raise unreachable(shown, exc) from None
    finally:
        engine.dispose()
    typer.echo(f"{shown} is at revision {reached}")


@db_app.command("current")
def db_current() -> None:
    """Print the revision duly's database is at, and whether it is the newest."""
    from sqlalchemy.exc import OperationalError

    from duly.store import migrations

    quiet_logging()
    engine, shown = database(settings_with())
    try:
        at = migrations.current(engine)
    except OperationalError as exc:
        raise unreachable(shown, exc) from None
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

    quiet_logging()
    path = migrations.revision(message)
    typer.echo(f"wrote {path}: read it, then `ruff format` it and commit it with the model change")
