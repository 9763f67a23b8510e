"""The names of the actions a process may `do`, the parameters each takes, and how they render.

The worker registers one implementation per name (activities/actions.py); a test keeps the two
in step. An unknown name is a load-time error, since Temporal would otherwise retry a missing
activity forever. The compiler checks a `with:` and the interpreter renders it by asking this
registry, never by testing an action's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ActionSignature:
    """Parameters of one action's `with:`, and how they are rendered on the instance data.

    Attributes:
        summary: What the action does, for people.
        required: Keys `with:` must give.
        optional: Keys `with:` may give.
        open_ended: Any key is accepted (`set` writes data under them).
        url_param: The key holding a URL, whose template puts instance data into its path and
            query only, %-encoded, so data never changes where the request goes.
        templated: `template` names an email template (definitions/templates/) whose subject and
            body fill in what `with:` leaves out; without one, `body` is required.
    """

    summary: str
    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    open_ended: bool = False
    url_param: str | None = None
    templated: bool = False


SET = "set"
"""The action a rung's `set:` runs: it writes values into the instance data."""

ACTIONS: dict[str, ActionSignature] = {
    "email": ActionSignature(
        "send an email; `template` names definitions/templates/<name>.txt",
        required=frozenset({"to"}),
        optional=frozenset({"subject", "body", "template", "cc"}),
        templated=True,
    ),
    "webhook": ActionSignature(
        "POST the instance data (or `payload`) as JSON to `url`",
        required=frozenset({"url"}),
        optional=frozenset({"payload", "secret_env"}),
        url_param="url",
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
    SET: ActionSignature(
        "write values into the instance data: `with: {lead.status: qualified}`",
        open_ended=True,
    ),
}


def signature_of(name: str) -> ActionSignature:
    """The registered action `name`; one that renders `with:` as plain values if unknown.

    The compiler refuses unknown names, so only an instance started on an older definition
    can meet one: its `run_action` then fails as any unknown action does.
    """
    return ACTIONS.get(name, _UNKNOWN)


_UNKNOWN = ActionSignature("an action this worker does not have")


def expand_dotted(values: dict[str, Any]) -> dict[str, Any]:
    """Turn dotted keys into nested dicts: `{"lead.status": "x"}` -> `{"lead": {"status": "x"}}`.

    Raises:
        ValueError: Two keys disagree, e.g. `lead: 1` and `lead.status: x`.
    """
    result: dict[str, Any] = {}
    for dotted, value in values.items():
        *parents, leaf = dotted.split(".")
        node = result
        for index, part in enumerate(parents):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ValueError(f"'{dotted}' needs '{'.'.join(parents[: index + 1])}' to be a map")
            node = child
        if isinstance(node.get(leaf), dict) and not isinstance(value, dict):
            raise ValueError(f"'{dotted}' would replace the map set by its sub-keys")
        node[leaf] = value
    return result
