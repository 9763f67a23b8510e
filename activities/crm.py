"""The CRM write-back actions: `crm.update`, `crm.task` and `crm.note`.

Handlers in the same registry as `email` and `webhook` (activities/actions.py), run by the
`run_action` activity with its retries and the step's `on_error`. Each names its CRM
(`crm: hubspot | salesforce | pipedrive`), the record (`object`, `id`) and what to write; the
clients in `duly.crm` know each CRM's endpoints. What a retry may fix (a rate limit, a 5xx, a
network failure) raises a retryable error, a rate limit with the wait the CRM asked for; what
it cannot (a refused field, missing credentials, a bad parameter) a non-retryable one, so the
step takes `on_error` at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.messages import RunActionInput, RunActionResult
from duly.crm import (
    CRMS,
    Activity,
    CrmClient,
    CrmError,
    NotConfigured,
    RateLimited,
    Refused,
    Written,
    client_for,
)
from duly.settings import Settings


def _bad_params(action: str, message: str) -> ApplicationError:
    return ApplicationError(
        f"action '{action}': {message}", type="ActionParametersError", non_retryable=True
    )


def _text_param(action: RunActionInput, name: str, *, required: bool = True) -> str:
    value = action.params.get(name)
    text = "" if value is None else str(value).strip()
    if required and not text:
        raise _bad_params(action.action, f"'{name}' is empty; it must name the CRM's {name}")
    return text


Clients = Callable[[str, Settings], CrmClient]
"""Makes the client of a CRM by name (`duly.crm.client_for`)."""


def _written(
    action: RunActionInput,
    settings: Settings,
    write: Callable[..., Written],
    clients: Clients = client_for,
) -> Any:
    """Run one write against the CRM the action names, its failures sorted for Temporal."""
    crm = _text_param(action, "crm")
    if crm not in CRMS:
        raise _bad_params(action.action, f"'crm' is {crm!r}; expected one of {', '.join(CRMS)}")
    object, id = _text_param(action, "object"), _text_param(action, "id")
    try:
        client: CrmClient = clients(crm, settings)
        written = write(client, object, id)
    except RateLimited as exc:
        raise ApplicationError(
            str(exc), type="CrmRateLimited", next_retry_delay=exc.retry_after
        ) from exc
    except (Refused, NotConfigured) as exc:
        raise ApplicationError(str(exc), type=type(exc).__name__, non_retryable=True) from exc
    except CrmError as exc:
        raise ApplicationError(str(exc), type="CrmUnavailable") from exc
    return RunActionResult(detail=f"{crm}: {written.detail}")


def update_record(
    action: RunActionInput, settings: Settings, clients: Clients = client_for
) -> RunActionResult:
    """Set fields on a CRM record: `with: {crm, object, id, fields: {name: value}}`."""
    fields = action.params.get("fields")
    if not isinstance(fields, dict) or not fields:
        raise _bad_params("crm.update", "'fields' must map CRM field names to values")
    result: RunActionResult = _written(
        action, settings, lambda client, object, id: client.update(object, id, fields), clients
    )
    return result


def log_task(
    action: RunActionInput, settings: Settings, clients: Clients = client_for
) -> RunActionResult:
    """Log a task on a CRM record: `with: {crm, object, id, subject, body, due, owner, done}`.

    `done` (default true) logs a completed task, the outcome of the step; false, a to-do due at
    `due` (ISO 8601; default now).
    """
    activity = Activity(
        kind="task",
        key=action.idempotency_key,
        subject=_text_param(action, "subject"),
        body=_text_param(action, "body", required=False),
        due=_moment(action, "due"),
        done=_flag(action, "done", default=True),
        owner=_text_param(action, "owner", required=False) or None,
    )
    result: RunActionResult = _written(
        action, settings, lambda client, object, id: client.log(object, id, activity), clients
    )
    return result


def log_note(
    action: RunActionInput, settings: Settings, clients: Clients = client_for
) -> RunActionResult:
    """Log a note on a CRM record: `with: {crm, object, id, body, owner}`."""
    activity = Activity(
        kind="note",
        key=action.idempotency_key,
        body=_text_param(action, "body"),
        due=datetime.now(UTC),
        owner=_text_param(action, "owner", required=False) or None,
    )
    result: RunActionResult = _written(
        action, settings, lambda client, object, id: client.log(object, id, activity), clients
    )
    return result


def _moment(action: RunActionInput, name: str) -> datetime:
    text = _text_param(action, name, required=False)
    if not text:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _bad_params(action.action, f"'{name}' is not an ISO 8601 time: {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _flag(action: RunActionInput, name: str, *, default: bool) -> bool:
    value = action.params.get(name, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "1"):
        return True
    if text in ("false", "no", "0", ""):
        return False
    raise _bad_params(action.action, f"'{name}' must be true or false, not {value!r}")


CRM_HANDLERS: dict[str, Callable[[RunActionInput, Settings], RunActionResult]] = {
    "crm.update": update_record,
    "crm.task": log_task,
    "crm.note": log_note,
}
"""The CRM actions by name; activities/actions.py adds them to its registry."""


class _Accepting:
    """A CRM that takes every write and keeps none: a simulation's (nothing leaves the run)."""

    def update(self, object: str, id: str, fields: dict[str, object]) -> Written:
        return Written(detail=f"{object} {id}: {', '.join(fields)} not written (a simulation)")

    def log(self, object: str, id: str, activity: Activity) -> Written:
        return Written(detail=f"{object} {id}: {activity.kind} not logged (a simulation)")


def _accepting(crm: str, settings: Settings) -> CrmClient:
    return _Accepting()


ACCEPTED_CRM_HANDLERS: dict[str, Callable[[RunActionInput, Settings], RunActionResult]] = {
    "crm.update": functools.partial(update_record, clients=_accepting),
    "crm.task": functools.partial(log_task, clients=_accepting),
    "crm.note": functools.partial(log_note, clients=_accepting),
}
"""The CRM actions of a simulation: parameters checked as ever, each write taken as accepted."""
