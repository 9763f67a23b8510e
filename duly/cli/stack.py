"""Commands that run duly: the embedded stack, the worker alone, the web app alone, the demo."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from duly.cli.common import (
    DefinitionsOption,
    TemporalOption,
    VerboseOption,
    database,
    load_or_exit,
    quiet_demo_logs,
    run,
    settings_with,
    unreachable,
)
from duly.settings import Settings

app = typer.Typer()


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

    settings = settings_with(
        definitions=definitions,
        temporal_address=temporal,
        temporal_ui_port=ui_port,
        data_dir=data_dir,
    )
    configure_logging(settings)
    if demo:
        quiet_demo_logs()
    run(run_stack(settings, demo=demo, demo_verbose=verbose))


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

    settings = settings_with(definitions=definitions, data_dir=data_dir)
    loaded = load_or_exit(definitions)
    log_file = None if verbose else demo_log(settings)
    configure(settings, log_file=log_file)
    quiet_demo_logs()
    if log_file is not None:
        typer.echo(f"the engine's log goes to {log_file} (--verbose prints it here)", err=True)
    progress = reporter()
    try:
        result = run(
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


@app.command()
def worker(
    definitions: DefinitionsOption = Path("definitions"),
    temporal: TemporalOption = None,
) -> None:
    """Run the worker alone, against a Temporal that is already running."""
    from duly import worker as worker_module

    settings = settings_with(definitions=definitions, temporal_address=temporal)
    worker_module.configure_logging(settings)
    run(worker_module.main(settings=settings))


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

    settings = settings_with(definitions=definitions, temporal_address=temporal)
    configure(settings)
    try:
        run(_serve_web(settings))
    except OperationalError as exc:
        _, shown = database(settings)
        raise unreachable(shown, exc) from None


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
