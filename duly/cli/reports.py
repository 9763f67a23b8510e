"""Commands that measure and forecast: reports, weekly summaries, monitors, what-if runs."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from duly.cli.common import (
    DefinitionsOption,
    JsonOption,
    TemporalOption,
    Work,
    database,
    load_or_exit,
    print_json,
    quiet_demo_logs,
    quiet_logging,
    run,
    settings_with,
    with_work,
)
from duly.language.errors import DefinitionError
from duly.settings import Settings, web_url
from duly.tables import table, when

app = typer.Typer()


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
    settings = settings_with(definitions=definitions, temporal_address=temporal)
    quiet_logging()
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
        run(_send_summary(settings, week, chosen if manager else None))
        return
    engine, _ = database(settings)
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
        print_json([item.model_dump(mode="json") for item in made])
        return
    for item in made:
        typer.echo(f"Subject: {item.subject}\n")
        typer.echo(item.html() if output is SummaryFormat.html else item.text())


async def _send_summary(settings: Settings, week: str, chosen: list[str] | None) -> None:
    from duly.summary_schedule import start_week
    from duly.temporal_client import connect
    from workflows.summary import weekly_summary_id
    from workflows.summary_messages import WeeklySummaryResult

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
    quiet_logging()
    try:
        engine = prepare_database(settings_with(definitions=definitions), loaded)
    except VersionConflicts as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    try:
        with session_factory(engine)() as session:
            statuses = monitor_statuses(session=session, definitions=loaded)
    finally:
        engine.dispose()
    if as_json:
        print_json(statuses)
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

    made = with_work(go, acting, definitions, None)
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
    from datetime import UTC

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

    settings = settings_with(definitions=definitions, data_dir=data_dir)
    loaded = load_or_exit(definitions)
    quiet_logging()
    quiet_demo_logs()

    def progress(done: int, total: int) -> None:
        typer.echo(f"run {done}/{total} done", err=True)

    try:
        first = run(
            run_simulation(
                scenario, settings, loaded, runs=runs, seed=seed, weeks=weeks, progress=progress
            )
        )
        second = (
            run(
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
