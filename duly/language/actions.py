"""The names of the actions a process may `do`, and the parameters each takes.

The worker registers one implementation per name (activities/actions.py); a test keeps the two
in step. An unknown name is a load-time error, since Temporal would otherwise retry a missing
activity forever.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ActionSignature:
    """Parameters of one action's `with:`; `open_ended` accepts any key (set writes data)."""

    summary: str
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    open_ended: bool = False


ACTIONS: dict[str, ActionSignature] = {
    "email": ActionSignature(
        "send an email; `template` names definitions/templates/<name>.txt",
        required=frozenset({"to"}),
        optional=frozenset({"subject", "body", "template", "cc"}),
    ),
    "webhook": ActionSignature(
        "POST the instance data (or `payload`) as JSON to `url`",
        required=frozenset({"url"}),
        optional=frozenset({"payload", "secret_env"}),
    ),
    "crm.update": ActionSignature(
        "set fields on a CRM record: `crm` (hubspot, salesforce, pipedrive), `object`, `id`",
        required=frozenset({"crm", "object", "id", "fields"}),
    ),
    "crm.task": ActionSignature(
        "log a task on a CRM record (completed unless `done: false`), e.g. the step's outcome",
        required=frozenset({"crm", "object", "id", "subject"}),
        optional=frozenset({"body", "due", "owner", "done"}),
    ),
    "crm.note": ActionSignature(
        "log a note on a CRM record, e.g. the rep's note",
        required=frozenset({"crm", "object", "id", "body"}),
        optional=frozenset({"owner"}),
    ),
    "set": ActionSignature(
        "write values into the instance data: `with: {lead.status: qualified}`",
        open_ended=True,
    ),
}
