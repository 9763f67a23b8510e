"""Backfill: records exported from the CRM (CSV or JSON lines), mapped by a source's rules.

Each record is a change of kind `imported` with the record's own creation time (the first of
the usual columns present), so an instance's SLA clock counts from when the record was really
created. Only events that start a process are imported: a record that maps to an ending event
(a converted lead) has nothing to start. Each event's id is made from the record's id, so
importing the same file twice starts nothing new: the second time every event is a duplicate.
Events go through the same service as /api/events and webhooks, at bulk priority
(`workflows.priority`): the instances' start-up waits behind live work, breaches first.
"""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from duly.client import starts_on
from duly.language.business_time import add
from duly.language.compiler import CompiledProcess
from duly.language.expressions import ExpressionError
from duly.language.loader import Definitions
from duly.language.model import DecisionStep, Targets, TaskStep
from duly.language.sources import SourceSpec
from duly.services import events
from duly.services.context import ServiceContext
from duly.services.schemas import EventIn
from duly.sources.changes import Change
from duly.sources.mapping import Ignored, MappingError, evaluate, map_change, render
from duly.sources.receive import run_all

ID_COLUMNS = ("id", "Id", "ID", "hs_object_id", "Record ID", "record_id")
CREATED_COLUMNS = (
    "occurred_at",
    "CreatedDate",
    "createdate",
    "hs_createdate",
    "Create Date",
    "add_time",
    "created_at",
)


class ImportFileError(ValueError):
    """The file cannot be read as records; the message says where."""


@dataclass
class Planned:
    """One record's event, and what it would start."""

    line: int
    event: EventIn
    processes: list[str]
    due: list[tuple[str, str, datetime]] = field(default_factory=list)  # (process, step, due)


@dataclass
class Plan:
    """What a file would import: events that start something, and the records left out."""

    events: list[Planned] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (line, why)


def read_records(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Each record of a CSV (with a header row) or JSON-lines file, with its line number.

    Raises:
        ImportFileError: A line is not a JSON object, or the file is neither format.
    """
    text = path.read_text(encoding="utf-8-sig")
    first = text.lstrip()[:1]
    if path.suffix.lower() == ".csv" or (first and first not in "{["):
        reader = csv.DictReader(text.splitlines())
        for row in reader:
            yield reader.line_num, {k: v for k, v in row.items() if k is not None}
        return
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ImportFileError(f"{path}:{number}: not a JSON object: {exc.msg}") from None
        if not isinstance(record, dict):
            raise ImportFileError(f"{path}:{number}: not a JSON object")
        yield number, record


def record_change(object_type: str, record: dict[str, Any]) -> Change:
    """A record as an `imported` change, keyed by its id (or, lacking one, its content)."""
    record_id = next((str(record[c]) for c in ID_COLUMNS if record.get(c) not in (None, "")), "")
    if not record_id:
        canonical = json.dumps(record, sort_keys=True, default=str).encode()
        record_id = "sha256-" + hashlib.sha256(canonical).hexdigest()[:32]
    created = next(
        (str(record[c]) for c in CREATED_COLUMNS if record.get(c) not in (None, "")), None
    )
    return Change(
        object=object_type,
        object_id=record_id,
        change="imported",
        key=f"import:{object_type}:{record_id}",
        occurred_at=created,
        record=record,
        raw=record,
    )


def plan(path: Path, source: SourceSpec, object_type: str, definitions: Definitions) -> Plan:
    """Map every record of a file; nothing is sent.

    Raises:
        ImportFileError: The file cannot be read, or a record cannot be mapped (with its line).
    """
    result = Plan()
    for line, record in read_records(path):
        change = record_change(object_type, record)
        try:
            mapped = map_change(source, change, definitions.org)
        except MappingError as exc:
            raise ImportFileError(f"{path}:{line}: {exc}") from None
        if isinstance(mapped, Ignored):
            result.skipped.append((line, mapped.reason))
            continue
        starts = [
            name
            for name, process in sorted(definitions.processes.items())
            if starts_on(process, mapped.type, mapped.data)
        ]
        if not starts:
            result.skipped.append((line, f"{mapped.type} starts no process"))
            continue
        planned = Planned(line, mapped, starts)
        if mapped.occurred_at is not None:
            for name in starts:
                due = first_due(definitions.processes[name], mapped.data, mapped.occurred_at)
                if due is not None:
                    planned.due.append((name, *due))
        result.events.append(planned)
    return result


def first_due(
    process: CompiledProcess, data: dict[str, Any], start: datetime
) -> tuple[str, datetime] | None:
    """The first task an instance would open and when its SLA falls due, counted from `start`.

    Decisions are followed on the data; anything else before the first task (a wait, an
    action) makes the due time unknowable here, so None.
    """
    steps = process.spec.steps
    step_id = process.spec.start
    for _ in range(len(steps)):
        step = steps.get(step_id)
        if isinstance(step, DecisionStep):
            try:
                step_id = next(
                    (b.next for b in step.branches if evaluate(b.when, data)), step.otherwise
                )
            except ExpressionError:
                return None
            continue
        if not isinstance(step, TaskStep) or step.sla is None:
            return None
        within = step.sla.within
        if isinstance(within, Targets):
            try:
                chosen = render(within.by, data).strip()
            except ExpressionError:
                return None
            duration = within.targets.get(chosen, within.default)
            if duration is None:
                return None
        else:
            duration = within
        return step_id, add(process.calendar, start, duration)
    return None


@dataclass
class Delivered:
    """What an import did."""

    accepted: int = 0
    duplicates: int = 0
    instances: list[str] = field(default_factory=list)


async def deliver(
    context: ServiceContext,
    planned: list[Planned],
    on_progress: Callable[[int], None] = lambda _: None,
    *,
    concurrency: int = 16,
) -> Delivered:
    """Send the planned events through the inbound service, a few at a time.

    Raises:
        ServiceError: An event was refused or Temporal did not answer; importing the file
            again sends only what was not received yet.
    """
    done = Delivered()
    gate = asyncio.Semaphore(concurrency)

    async def one(item: Planned) -> None:
        async with gate:
            result = await events.receive_event(context, item.event, bulk=True)
        if result.status == "duplicate":
            done.duplicates += 1
        else:
            done.accepted += 1
            done.instances.extend(result.instances)
        on_progress(1)

    await run_all(one(item) for item in planned)
    return done
