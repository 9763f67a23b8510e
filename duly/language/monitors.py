"""Checks on definitions/monitors/*.yaml against the processes, teams and calendars they name."""

from __future__ import annotations

from duly.language.compiler import Context
from duly.language.errors import Problem
from duly.language.model import MonitorSpec
from duly.language.source import Source
from duly.language.validation import did_you_mean


def check_monitor(
    spec: MonitorSpec, source: Source, context: Context, processes: set[str]
) -> list[Problem]:
    """Problems with what a monitor refers to."""
    problems: list[Problem] = []
    teams = list(context.org.teams) if context.org else []
    users = list(context.org.users) if context.org else []

    def known(path: tuple[str | int, ...], value: str, names: list[str], what: str) -> None:
        if value not in names:
            hint = did_you_mean(value, names)
            problems.append(source.problem(path, f"unknown {what} '{value}'{hint}"))

    if spec.filter.process is not None:
        known(("filter", "process"), spec.filter.process, sorted(processes), "process")
    if spec.filter.team is not None and context.org is not None:
        known(("filter", "team"), spec.filter.team, teams, "team")
    if spec.schedule.during is not None:
        known(("schedule", "during"), spec.schedule.during, list(context.calendars), "calendar")
    for index, target in enumerate(spec.notify):
        kind, _, name = target.partition(":")
        path = ("notify", index)
        if target == "manager":
            continue
        if kind == "user" and name:
            if context.org is not None:
                known(path, name, users, "user")
        elif kind == "team" and name:
            if context.org is not None:
                known(path, name, teams, "team")
        else:
            problems.append(
                source.problem(
                    path,
                    f"'{target}' is not understood here; expected manager, user:<id> or team:<id>",
                )
            )
    return problems
