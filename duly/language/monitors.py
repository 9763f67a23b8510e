"""Checks on definitions/monitors/*.yaml against the processes, teams and calendars they name."""

from __future__ import annotations

import re

from duly.language.compiler import Context
from duly.language.errors import Problem
from duly.language.model import MonitorSpec
from duly.language.source import Source
from duly.language.validation import did_you_mean

DATA_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*")
"""A place in an event's data: keys joined by dots (`backlog`, `queue.size`)."""


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

    problems.extend(check_gauge(spec, source))
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


def check_gauge(spec: MonitorSpec, source: Source) -> list[Problem]:
    """`measure: gauge` and its `gauge:` block go together; a gauge counts no tasks."""
    if spec.measure == "gauge" and spec.gauge is None:
        return [
            source.problem(
                ("measure",),
                "measure 'gauge' reads a value reported by events: add "
                "`gauge: {event: <type>, value: <path in its data>}`",
            )
        ]
    if spec.measure != "gauge" and spec.gauge is not None:
        return [
            source.problem(
                ("gauge",),
                f"`gauge:` is read only by `measure: gauge`; this monitor measures {spec.measure}",
            )
        ]
    if spec.measure != "gauge":
        return []
    problems = []
    assert spec.gauge is not None
    for path, text in [(("gauge", "value"), spec.gauge.value)] + [
        (("gauge", "where", key), key) for key in spec.gauge.where
    ]:
        if not DATA_PATH.fullmatch(text):
            problems.append(
                source.problem(
                    path,
                    f"'{text}' is not a path in the event's data; write keys joined by dots, "
                    "like backlog or queue.size",
                )
            )
    for key in ("process", "step"):
        if getattr(spec.filter, key) is not None:
            problems.append(
                source.problem(
                    ("filter", key),
                    f"a gauge counts no tasks, so 'filter.{key}' has nothing to narrow; choose "
                    "the events with `gauge.where` (filter.team only names whose manager hears)",
                )
            )
    return problems
