"""Block Kit for the Slack app: buttons, pickers, closed messages and the completion modal.

A task's outcome buttons, an alert's acknowledge and reassign, a message closed once its task
moved on, and the modal that asks a step's `fields:`.

Every interactive element carries what it acts on in its `value` (a task id, an alert id);
`action_id`s name what it does, so `duly.slack.interactions` dispatches on them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from duly import timefmt
from duly.language.model import FieldSpec, TaskStep, field_value_problem
from duly.notify.render import slack_escape
from duly.store.models import Alert, Task

COMPLETE = "duly_complete"
OPEN_MODAL = "duly_open_complete"
ACKNOWLEDGE = "duly_ack"
REASSIGN = "duly_reassign"
MODAL = "duly_complete_modal"
MAX_OPTIONS = 100  # a static_select holds at most 100 options
TEXT_LIMIT = 75  # a button's or option's text


def _text(value: str) -> dict[str, Any]:
    return {"type": "plain_text", "text": value[:TEXT_LIMIT] or " ", "emoji": False}


def _without_actions(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [block for block in blocks if block.get("type") != "actions"]


def _links(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The link buttons of the rendered message (open the instance...), kept beside ours."""
    links = []
    for block in blocks:
        if block.get("type") == "actions":
            links += [element for element in block.get("elements", []) if "url" in element]
    return [link for link in links if "Acknowledge" not in link.get("text", {}).get("text", "")]


def task_blocks(base: list[dict[str, Any]], task: Task) -> list[dict[str, Any]]:
    """The assignment message with one button per outcome, or one that opens the fields modal."""
    if task.fields:
        buttons = [
            {
                "type": "button",
                "action_id": OPEN_MODAL,
                "text": _text("Complete…"),
                "value": task.id,
                "style": "primary",
            }
        ]
    else:
        buttons = [
            {
                "type": "button",
                "action_id": f"{COMPLETE}:{outcome}",
                "text": _text(outcome),
                "value": task.id,
            }
            for outcome in task.outcomes
        ]
    links = [link for link in _links(base) if "inbox" not in link["text"]["text"]]
    actions = {"type": "actions", "block_id": "duly_task", "elements": buttons + links}
    return [*_without_actions(base), actions]


def alert_blocks(
    base: list[dict[str, Any]], alert: Alert, members: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """A manager's alert with Acknowledge and a Reassign picker of their teams' members.

    Args:
        base: The rendered message's blocks.
        alert: The alert.
        members: `(user id, name)` of the people the manager may hand the task to.
    """
    elements: list[dict[str, Any]] = [
        {
            "type": "button",
            "action_id": ACKNOWLEDGE,
            "text": _text("Acknowledge"),
            "value": str(alert.id),
            "style": "primary",
        }
    ]
    if alert.task_id and members:
        elements.append(
            {
                "type": "static_select",
                "action_id": f"{REASSIGN}:{alert.id}",
                "placeholder": _text("Reassign to…"),
                "options": [
                    {"text": _text(f"{name} ({user})"), "value": user}
                    for user, name in members[:MAX_OPTIONS]
                ],
            }
        )
    elements += _links(base)
    return [
        *_without_actions(base),
        {"type": "actions", "block_id": "duly_alert", "elements": elements},
    ]


def note(what: str) -> dict[str, Any]:
    """A context line saying what happened."""
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": f"*{slack_escape(what)}*"}]}


def closed_blocks(base: list[dict[str, Any]], what: str) -> list[dict[str, Any]]:
    """The message with its buttons replaced by a line saying what happened."""
    return [*_without_actions(base), note(what)]


def what_happened(task: Task, names: dict[str, str], zone: Any) -> str | None:
    """`Completed (reached) by Ana at 14:02 EST`, or None while the task is open."""
    if task.status == "open":
        return None
    when = f" at {timefmt.local(task.closed_at, zone)}" if task.closed_at else ""
    who = names.get(task.closed_by or "", task.closed_by or "")
    if task.status == "completed":
        by = f" by {who}" if who else ""
        return f"Already completed ({task.outcome}){by}{when}"
    return f"No longer open: {task.status}{when}"


def field_specs(definitions: Any, task: Task) -> dict[str, FieldSpec]:
    """The task's field declarations (required, options, help) from its step, by field name."""
    process = definitions.processes.get(task.process)
    step = process.spec.steps.get(task.step) if process is not None else None
    declared = dict(step.fields) if isinstance(step, TaskStep) else {}
    return {name: declared.get(name) or FieldSpec(type=kind) for name, kind in task.fields.items()}


def modal(task: Task, specs: dict[str, FieldSpec]) -> dict[str, Any]:
    """The `views.open` view asking for the task's fields and an outcome.

    Types, options, help and required-ness follow the web form: a field required for only some
    outcomes is marked optional here and checked against the outcome chosen on submission.
    """
    blocks: list[dict[str, Any]] = [
        {
            "type": "input",
            "block_id": "outcome",
            "label": _text("Outcome"),
            "element": {
                "type": "static_select",
                "action_id": "value",
                "options": [{"text": _text(o), "value": o} for o in task.outcomes],
            },
        }
    ]
    for name, spec in specs.items():
        kind = spec.type
        element: dict[str, Any]
        if kind == "choice":
            options = spec.options or []
            element = {
                "type": "static_select",
                "options": [{"text": _text(o), "value": o} for o in options],
            }
        elif kind in ("number", "integer"):
            element = {"type": "number_input", "is_decimal_allowed": kind == "number"}
        elif kind == "date":
            element = {"type": "datepicker"}
        elif kind == "datetime":
            element = {"type": "datetimepicker"}
        elif kind == "boolean":
            element = {"type": "checkboxes", "options": [{"text": _text("Yes"), "value": "true"}]}
        else:
            element = {"type": "plain_text_input"}
        element["action_id"] = "value"
        block: dict[str, Any] = {
            "type": "input",
            "block_id": f"field.{name}",
            "label": _text(name),
            "optional": kind == "boolean" or spec.required is not True,
            "element": element,
        }
        if spec.help:
            block["hint"] = _text(spec.help)
        blocks.append(block)
    blocks.append(
        {
            "type": "input",
            "block_id": "note",
            "label": _text("Note"),
            "optional": True,
            "element": {"type": "plain_text_input", "action_id": "value", "multiline": True},
        }
    )
    return {
        "type": "modal",
        "callback_id": MODAL,
        "private_metadata": task.id,
        "title": _text("Complete task"),
        "submit": _text("Complete"),
        "close": _text("Cancel"),
        "blocks": blocks,
    }


def modal_values(task: Task, state: dict[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """The outcome, note and typed fields of a `view_submission`'s `view.state.values`."""

    def element(block: str) -> dict[str, Any]:
        entry = state.get(block)
        value = entry.get("value") if isinstance(entry, dict) else None
        return value if isinstance(value, dict) else {}

    selected = element("outcome").get("selected_option")
    outcome = selected.get("value", "") if isinstance(selected, dict) else ""
    note = element("note").get("value") or None
    fields: dict[str, Any] = {}
    for name, kind in task.fields.items():
        item = element(f"field.{name}")
        if kind == "boolean":
            fields[name] = bool(item.get("selected_options"))
        elif kind == "choice" and isinstance(item.get("selected_option"), dict):
            fields[name] = item["selected_option"].get("value")
        elif kind == "date" and item.get("selected_date"):
            fields[name] = item["selected_date"]
        elif kind == "datetime" and item.get("selected_date_time") is not None:
            moment = datetime.fromtimestamp(int(item["selected_date_time"]), UTC)
            fields[name] = moment.isoformat()
        elif item.get("value") not in (None, ""):
            raw = str(item["value"]).strip()
            fields[name] = _number(raw, kind)
    return str(outcome), note, fields


def _number(text: str, kind: str) -> Any:
    try:
        if kind == "integer":
            return int(text)
        if kind == "number":
            number = float(text)
            return int(number) if number.is_integer() else number
    except ValueError:
        return text  # the workflow's check says what was wrong
    return text


def modal_errors(
    task: Task, specs: dict[str, FieldSpec], outcome: str, fields: dict[str, Any]
) -> dict[str, str]:
    """What a submission lacks, by block id (shown under each field); empty when complete."""
    errors: dict[str, str] = {}
    if outcome not in task.outcomes:
        errors["outcome"] = f"pick one of: {', '.join(task.outcomes)}"
    for name, spec in specs.items():
        if name not in fields:
            if spec.type != "boolean" and spec.default is None and spec.required_for(outcome):
                errors[f"field.{name}"] = f"{name} is required for {outcome or 'this outcome'}"
        elif problem := field_value_problem(name, spec, fields[name]):
            errors[f"field.{name}"] = problem
    return errors
