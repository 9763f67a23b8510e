"""A CRM change through a source's rules: the duly event it becomes, or why it is ignored."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from jinja2 import Template as JinjaTemplate
from jinja2.exceptions import SecurityError, TemplateError
from pydantic import ValidationError

from duly.language import expressions
from duly.language.expressions import ExpressionError
from duly.language.model import OrgSpec
from duly.language.org import user_for_crm_id
from duly.language.sources import SourceSpec
from duly.services.schemas import EventIn
from duly.sources.changes import Change

MAX_EVENT_ID = 200  # EventIn.id's limit
_WHOLE = re.compile(r"^\{\{(.*)\}\}$", re.DOTALL)


_FAILURES = (TemplateError, SecurityError, TypeError, ValueError, ArithmeticError, OverflowError)


@lru_cache(maxsize=4096)
def _template(text: str) -> JinjaTemplate:
    # compiled once: a rule's templates run on every change (10,000 for an import)
    return expressions._env.from_string(text)


@lru_cache(maxsize=4096)
def _expression(text: str) -> Callable[..., Any]:
    return expressions._env.compile_expression(text, undefined_to_none=True)


def render(text: str, context: dict[str, Any]) -> str:
    """`expressions.render`, with the template compiled once (the same sandbox)."""
    try:
        return _template(text).render(context)
    except _FAILURES as exc:
        raise ExpressionError(f"template {text!r} failed: {exc}") from exc


def evaluate(text: str, context: dict[str, Any]) -> Any:
    """`expressions.evaluate`, with the expression compiled once (the same sandbox)."""
    try:
        return _expression(text)(**context)
    except _FAILURES as exc:
        raise ExpressionError(f"expression {text!r} failed: {exc}") from exc


class MappingError(ValueError):
    """A rule could not be applied to a change (a template failed, a time unreadable)."""


@dataclass(frozen=True)
class Ignored:
    """A change no rule takes: counted, not an error (CRMs send more than a source maps)."""

    reason: str


def parse_moment(value: Any) -> datetime:
    """An ISO 8601 moment (UTC when it names no zone) or Unix time in ms or s.

    Raises:
        MappingError: Neither.
    """
    text = str(value).strip()
    if text.isdigit():
        number = int(text)
        # 10^11 s is the year 5138; a number that large is milliseconds (HubSpot's)
        try:
            return datetime.fromtimestamp(number / 1000 if number >= 10**11 else number, UTC)
        except (ValueError, OverflowError, OSError):
            raise MappingError(f"occurred_at {text} is not a moment in Unix time") from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise MappingError(
            f"occurred_at {text!r} is not a moment: give ISO 8601 (2026-12-01T14:05:00Z) or "
            "Unix time"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def render_data(value: Any, context: dict[str, Any]) -> Any:
    """Render a rule's data; a value that is one `{{ expression }}` keeps its type.

    `amount: "{{ record.amount | float }}"` gives a number a process can compare
    (`quote.amount >= 50000`), where rendering it as text would not.

    Raises:
        ExpressionError: A template failed.
    """
    if isinstance(value, str):
        whole = _WHOLE.match(value.strip())
        if whole and "{{" not in whole.group(1) and "{%" not in value:
            found = evaluate(whole.group(1), context)
            return "" if found is None else found
        return render(value, context) if "{" in value else value
    if isinstance(value, dict):
        return {key: render_data(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render_data(item, context) for item in value]
    return value


def event_id(source: str, key: str) -> str:
    """The duly event id for a CRM key: the source's name first, so sources never collide."""
    full = f"{source}:{key}"
    if len(full) <= MAX_EVENT_ID:
        return full
    return f"{source}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


def map_change(source: SourceSpec, change: Change, org: OrgSpec) -> EventIn | Ignored:
    """The event the first rule whose `when` holds makes of a change, or why none does.

    Raises:
        MappingError: The chosen rule's templates fail on this change.
    """
    rules = source.objects.get(change.object)
    if rules is None:
        return Ignored(f"object type '{change.object}' is not mapped by source '{source.source}'")
    context = change.context()
    try:
        rule = next((r for r in rules.events if r.when is None or evaluate(r.when, context)), None)
        if rule is None:
            return Ignored(f"no rule of '{change.object}' takes this change ({change.change})")
        key = render(rule.id, context).strip() if rule.id else change.key
        data = render_data(rule.data, context)
        owner_id = render(rule.owner, context).strip() if rule.owner else ""
        when = render(rule.occurred_at, context).strip() if rule.occurred_at else change.occurred_at
    except ExpressionError as exc:
        raise MappingError(f"{change.object} {change.object_id}: {exc}") from None
    if not key:
        raise MappingError(f"{change.object} {change.object_id}: the rule's id rendered empty")
    if not isinstance(data, dict):
        raise MappingError("the rule's data is not a mapping")
    try:
        json.dumps(data)
    except (TypeError, ValueError):
        raise MappingError(
            f"{change.object} {change.object_id}: the rule's data renders values that are not "
            "text, numbers, lists or mappings"
        ) from None
    if owner_id:
        user = user_for_crm_id(org, source.owner_key, owner_id)
        if user is not None:
            data["owner"] = user
        else:
            data.pop("owner", None)  # unmapped: the process's fallback assigns the work
    try:
        return EventIn(
            id=event_id(source.source, key),
            type=rule.type,
            data=data,
            occurred_at=parse_moment(when) if when else None,
        )
    except ValidationError as exc:  # e.g. an occurred time in the future
        reasons = "; ".join(error["msg"].removeprefix("Value error, ") for error in exc.errors())
        raise MappingError(f"{change.object} {change.object_id}: {reasons}") from None
