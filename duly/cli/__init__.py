"""The `duly` command: one typer app made of a group of commands per concern.

- `processes`: validate, render, schema, docs, publish
- `stack`: up, demo, worker, web
- `instances`: start, event, state, instances, show, unheard
- `work`: complete, reassign, tasks, alerts, ack
- `reports`: report, summary, monitors, simulate
- `sources`: sources, import
- `admin`: token, calendar-url, db
"""

from __future__ import annotations

import typer
from typer.core import TyperGroup

from duly.cli import admin, instances, processes, reports, sources, stack, work

HELP_ORDER = (
    *("validate", "render", "schema", "docs"),
    *("up", "demo", "summary", "worker", "web"),
    *("start", "event", "state"),
    *("complete", "reassign", "token", "tasks", "alerts", "ack", "monitors", "instances", "show"),
    *("report", "sources", "import", "calendar-url", "publish", "unheard", "simulate", "db"),
)
"""The order `duly --help` lists the commands in, whichever group defines them."""


class _InHelpOrder(TyperGroup):
    """Lists the commands in `HELP_ORDER` (any other after them), not group by group."""

    def list_commands(self, ctx: object) -> list[str]:
        known = [name for name in HELP_ORDER if name in self.commands]
        return known + [name for name in self.commands if name not in HELP_ORDER]


app = typer.Typer(
    help="duly: run sales processes on time, and measure how consistently they are run.",
    no_args_is_help=True,
    add_completion=False,
    cls=_InHelpOrder,
)
for group in (processes, stack, instances, work, reports, sources, admin):
    app.add_typer(group.app)

__all__ = ["app"]
