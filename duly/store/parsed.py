"""Each store's definitions, parsed once: what an instance runs, its calendar's zone.

A storm's thousand alerts, a day's facts and every instance start ask about the definition of
a (process, version). A stored definition never changes its content for a hash (only an
earlier row's missing content is filled in), so each store's rows are read and parsed once
here, and an empty row is never kept.
"""

from __future__ import annotations

import json
import weakref

from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session, select

from duly.language.compiler import CompiledProcess
from duly.store.models import Definition

_parsed: weakref.WeakKeyDictionary[Engine, dict[tuple[str, int, str], CompiledProcess]] = (
    weakref.WeakKeyDictionary()
)
"""Each store's definitions parsed so far, by (process, version, hash)."""


def forget_definitions(engine: Engine) -> None:
    """Parse a store's definitions anew: its rows were removed wholesale (tests truncate)."""
    _parsed.pop(engine, None)


def definition(
    session: Session, process: str, version: int, hash: str | None = None
) -> tuple[CompiledProcess | None, str | None]:
    """The compiled definition of a (process, version), when stored whole, and its zone.

    Read once per store. With `hash` (an instance's), the one parsed for it is taken first;
    an instance runs on its (process, version)'s row, whatever its hash.
    """
    parsed = _parsed.setdefault(session.get_bind().engine, {})
    for (name, number, stored_hash), compiled in parsed.items():
        if (name, number) == (process, version) and hash in (None, stored_hash):
            return compiled, compiled.calendar.timezone
    row = session.exec(
        select(Definition.hash, Definition.compiled_json).where(
            Definition.process == process, Definition.version == version
        )
    ).first()
    stored_hash, compiled_json = row if row is not None else ("", "")
    key = (process, version, stored_hash)
    if key not in parsed:
        try:
            parsed[key] = CompiledProcess.model_validate_json(compiled_json)
        except ValidationError:
            try:  # an older or partial definition row: its zone is still worth having
                return None, str(json.loads(compiled_json or "{}")["calendar"]["timezone"])
            except (ValueError, KeyError, TypeError):
                return None, None
    compiled = parsed[key]
    return compiled, compiled.calendar.timezone


def definition_zone(session: Session, process: str, version: int) -> str | None:
    """The calendar zone of a stored (process, version); None if unknown.

    A fact's week is counted in it: its instance's zone, without reading the instance.
    """
    return definition(session, process, version)[1]


def is_stored_whole(session: Session, process: str, version: int, hash: str) -> bool:
    """Whether the store holds this definition with its content.

    One parsed here was stored whole, and keeps its content: the store is asked only about
    the others.
    """
    if (process, version, hash) in _parsed.get(session.get_bind().engine, {}):
        return True
    query = select(Definition.id).where(
        Definition.process == process,
        Definition.version == version,
        Definition.hash == hash,
        Definition.compiled_json != "",
    )
    return session.exec(query).first() is not None
