"""Logging for every duly process: structlog, JSON lines in production, text in development.

`configure` sets up structlog and routes the standard library's loggers (uvicorn, the Temporal
SDK, APScheduler) through the same renderer, so with `DULY_LOG_FORMAT=json` every line on
stderr is one JSON object. Context bound with `structlog.contextvars` lands on every line logged
inside it: `ActivityLogContext` binds each activity's process, instance, step and task (read
from its input) plus the activity's name, workflow id and attempt, so any log line an activity
writes, in duly's code or a library's, says what it was working on.

Given a `log_file`, the same lines go to that file instead of stderr (`duly demo` keeps the
engine's thousands of lines out of the terminal that way). A stderr nobody reads any more (a
closed pipe) never stops the program: the lines that cannot be written are dropped.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

import structlog
from pydantic import BaseModel
from temporalio import activity
from temporalio.worker import (
    ActivityInboundInterceptor,
    ExecuteActivityInput,
    Interceptor,
)

from duly.settings import Settings

_file: TextIO | None = None
"""The log file `configure` opened, if any (None: log to stderr)."""


def configure(
    settings: Settings, *, level: int = logging.INFO, log_file: Path | None = None
) -> None:
    """Log with structlog to stderr: readable text, or JSON lines when `DULY_LOG_FORMAT=json`.

    Args:
        settings: duly's settings (`log_format`).
        level: The lowest level duly logs (a `logging` level); libraries log warnings and up.
        log_file: Append the lines to this file instead (created with its folder if missing).
    """
    global _file
    if _file is not None:
        _file.close()
        _file = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        _file = log_file.open("a", encoding="utf-8", buffering=1)
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.typing.Processor
    if settings.log_format == "json":
        # Tracebacks as data, without local variables: they may hold secrets (a database URL
        # with its password), and rendering them is slow when a dead database fails every call
        transformer = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        shared.append(structlog.processors.ExceptionRenderer(transformer))
        renderer = structlog.processors.JSONRenderer()
    else:
        formatter: structlog.typing.ExceptionRenderer = (
            structlog.dev.RichTracebackFormatter(show_locals=False, max_frames=20)
            if importlib.util.find_spec("rich") is not None
            else structlog.dev.plain_traceback
        )
        renderer = structlog.dev.ConsoleRenderer(
            colors=_file is None and sys.stderr.isatty(), exception_formatter=formatter
        )
    structlog.configure(
        processors=[*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
    # The standard library's records (uvicorn, temporalio, apscheduler) in the same format
    handler = _CurrentStderr()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_duly", False)]:
        root.removeHandler(old)
    handler._duly = True  # type: ignore[attr-defined]  # so a second configure replaces it
    root.addHandler(handler)
    root.setLevel(logging.WARNING)


def _target() -> TextIO:
    # The log file, else whatever sys.stderr is now (test runners swap it between phases)
    return _file if _file is not None else sys.stderr


def _stderr_logger(*_: Any) -> structlog.PrintLogger:
    return _SafePrintLogger(_target())


class _SafePrintLogger(structlog.PrintLogger):
    """A PrintLogger that drops a line it cannot write (its reader gone) instead of raising."""

    def msg(self, message: str) -> None:
        """Write the line, if the stream still takes it."""
        try:
            super().msg(message)
        except (BrokenPipeError, ValueError):  # a closed pipe, or a closed file
            pass

    log = debug = info = warn = warning = fatal = failure = err = error = critical = exception = msg


class _CurrentStderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to the log file, or whatever `sys.stderr` is at the time (test runners swap it)."""

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record to the current target."""
        self.stream = _target()
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        """Drop a record the stream no longer takes (a closed pipe) without a traceback."""
        if isinstance(sys.exc_info()[1], BrokenPipeError | ValueError):
            return
        super().handleError(record)


def context_of(message: object) -> dict[str, Any]:
    """What an activity input says it is about: process, instance, step, visit, task, monitor.

    A task id (`<process>/<key>/<run>/<step>/<visit>`) alone gives all of them; an instance id
    (`<process>/<key>/<run>`) gives the process.
    """
    if not isinstance(message, BaseModel):
        return {}
    fields = message.__dict__
    found: dict[str, Any] = {}
    task = fields.get("task_id")
    if isinstance(task, str) and task.count("/") >= 4:
        instance, step, visit = task.rsplit("/", 2)
        found.update(task=task, instance=instance, step=step, visit=visit)
    instance_id = fields.get("instance_id")
    if isinstance(instance_id, str):
        found["instance"] = instance_id
    if isinstance(found.get("instance"), str):
        found["process"] = found["instance"].split("/", 1)[0]
    for name in ("process", "step", "visit", "monitor"):
        if fields.get(name) is not None:
            found[name] = fields[name]
    return found


class ActivityLogContext(Interceptor):
    """A worker interceptor binding each activity's context to every line it logs."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:
        """Wrap the activity's execution."""
        return _BindActivity(next)


class _BindActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:
        info = activity.info()
        bound = {
            "activity": info.activity_type,
            "workflow_id": info.workflow_id,
            "attempt": info.attempt,
            **(context_of(input.args[0]) if input.args else {}),
        }
        # Synchronous activities run on a thread with a copy of this context: it carries over
        with structlog.contextvars.bound_contextvars(**bound):
            return await super().execute_activity(input)
