"""The actions a process step may `do`: one handler per name in duly/language/actions.py.

Each handler gets the action's input (its `with:` already rendered, email templates already
expanded into `subject` and `body`) and duly's settings. A failure that a retry may fix raises
an ordinary exception, so Temporal retries; a mistake in the definition raises a non-retryable
`ApplicationError`. Receivers dedupe on the idempotency key each handler sends.
"""

from __future__ import annotations

import hashlib
import json
import os
import smtplib
import time
from collections.abc import Callable, Mapping
from email.errors import MessageError
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import getaddresses
from typing import Any

import httpx
import structlog
from temporalio.exceptions import ApplicationError

from activities.crm import ACCEPTED_CRM_HANDLERS, CRM_HANDLERS
from activities.messages import RunActionInput, RunActionResult
from duly.language.actions import expand_dotted
from duly.notify.channels import outbound_allowed, refused_host, where
from duly.settings import Settings
from duly.signing import KEY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

ActionHandler = Callable[[RunActionInput, Settings], RunActionResult]

WEBHOOK_TIMEOUT_SECONDS = 30.0
SMTP_TIMEOUT_SECONDS = 30.0

_log = structlog.get_logger(__name__)


def _bad_params(action: str, message: str) -> ApplicationError:
    return ApplicationError(
        f"action '{action}': {message}", type="ActionParametersError", non_retryable=True
    )


def _bad_address(field: str, value: Any, why: str) -> ApplicationError:
    return ApplicationError(
        f"action 'email': '{field}' {value!r} {why}",
        type="InvalidEmailAddress",
        non_retryable=True,
    )


def _address(value: Any, field: str) -> Address:
    """One recipient, from one template value: exactly one address, on one line."""
    text = str(value).strip()
    if any(ord(character) < 32 or ord(character) == 127 for character in text):
        raise _bad_address(field, value, "contains a line break or control character")
    found = getaddresses([text])
    if len(found) != 1:
        raise _bad_address(
            field,
            value,
            "holds more than one address; each value is one address (give 'to' as a list "
            "in the step's 'with' for several)",
        )
    name, spec = found[0]
    try:
        address = Address(display_name=name, addr_spec=spec)
    except (ValueError, IndexError, MessageError):
        address = None
    if address is None or not address.username or not address.domain:
        raise _bad_address(field, value, "is not an email address like name@example.com")
    return address


def _addresses(value: Any, field: str) -> list[Address]:
    """Recipients of a param: one address per value; a list (as the step wrote it) for several."""
    if value is None or value == "":
        return []
    if isinstance(value, list | tuple):
        return [_address(item, field) for item in value if str(item).strip()]
    return [_address(value, field)]


def _one_line(text: Any) -> str:
    """A header value on one line: data with line breaks must not start new headers."""
    return " ".join(str(text or "").split())


def send_email(action: RunActionInput, settings: Settings) -> RunActionResult:
    """Send an email through the configured SMTP server.

    Params: `to` and `cc` (each one address, or a list of addresses), `subject`, `body`. A
    value that is not exactly one address (a line break, a comma-separated pair, not an
    address) is refused as `InvalidEmailAddress`, not retried, and the step takes its
    `on_error`. The subject is put on one line. The `Message-ID` is derived from the
    idempotency key, so a retried send carries the same id and mail systems can drop the
    duplicate.
    """
    params = action.params
    to, cc = _addresses(params.get("to"), "to"), _addresses(params.get("cc"), "cc")
    if not to:
        raise _bad_params("email", "'to' is empty; give an address, e.g. {{ contact.email }}")
    if "body" not in params:
        raise _bad_params("email", "no 'body' (and no 'template' to make one)")
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = tuple(to)
    if cc:
        message["Cc"] = tuple(cc)
    message["Subject"] = _one_line(params.get("subject"))
    domain = settings.smtp_from.rpartition("@")[2] or "duly"
    digest = hashlib.sha256(action.idempotency_key.encode()).hexdigest()[:32]
    message["Message-ID"] = f"<{digest}@{domain}>"
    message["X-Duly-Idempotency-Key"] = action.idempotency_key
    message.set_content(str(params["body"]))
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=SMTP_TIMEOUT_SECONDS) as smtp:
        smtp.send_message(message)
    sent = ", ".join(address.addr_spec for address in to + cc)
    return RunActionResult(detail=f"emailed {sent}")


def post_webhook(action: RunActionInput, settings: Settings) -> RunActionResult:
    """POST `payload` (or the instance data) as JSON to `url`.

    Sends `Idempotency-Key`, and when `secret_env` names an environment variable holding the
    signing secret, `X-Duly-Timestamp` and `X-Duly-Signature` signed as every duly webhook is
    (`duly.notify.signing`: HMAC-SHA256 of `<timestamp>.<body>`), so one receiver checks
    notifications and actions alike. Each attempt is signed afresh: a retry is not stale.
    A response other than 2xx raises, so Temporal retries; its error names the host and the
    status, never the answer's body (another system's text must not reach managers' alerts).
    A host not in `DULY_OUTBOUND_HOSTS` is refused before any connection, as
    `OutboundHostRefused`, not retried. Redirects are not followed.
    """
    params = action.params
    url = _webhook_url(action)
    if not outbound_allowed(url, settings):
        raise ApplicationError(
            f"action 'webhook': {refused_host(url)}",
            type="OutboundHostRefused",
            non_retryable=True,
        )
    payload = params.get("payload", action.data)
    body = json.dumps(payload, sort_keys=True, default=str).encode()
    headers = {"Content-Type": "application/json", KEY_HEADER: action.idempotency_key}
    secret_env = params.get("secret_env")
    if secret_env:
        secret = os.environ.get(str(secret_env))
        if not secret:
            raise _bad_params(
                "webhook",
                f"the environment variable {secret_env} (named in secret_env) is not set; "
                "set it to the signing secret where the worker runs",
            )
        timestamp = str(int(time.time()))
        headers[TIMESTAMP_HEADER] = timestamp
        headers[SIGNATURE_HEADER] = sign(secret, timestamp, body)
    response = httpx.post(url, content=body, headers=headers, timeout=WEBHOOK_TIMEOUT_SECONDS)
    if not response.is_success:
        raise ApplicationError(
            f"webhook {where(url)} answered {response.status_code}", type="WebhookFailed"
        )
    return RunActionResult(detail=f"POST {where(url)}: {response.status_code}")


def _webhook_url(action: RunActionInput) -> str:
    url = action.params.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise _bad_params("webhook", f"'url' must be an http(s) URL, not {url!r}")
    return url


def accept_webhook(action: RunActionInput, settings: Settings) -> RunActionResult:
    """A simulation's `webhook`: its URL checked as `post_webhook` checks it, and nothing sent."""
    return RunActionResult(detail=f"POST {where(_webhook_url(action))}: not sent (a simulation)")


def set_values(action: RunActionInput, settings: Settings) -> RunActionResult:
    """Write the params into the instance data, dotted keys as nested maps."""
    try:
        data = expand_dotted(action.params)
    except ValueError as exc:
        raise _bad_params("set", str(exc)) from exc
    return RunActionResult(data=data, detail="set " + ", ".join(sorted(action.params)))


ACTION_HANDLERS: dict[str, ActionHandler] = {
    "email": send_email,
    "webhook": post_webhook,
    "set": set_values,
    **CRM_HANDLERS,
}
"""Handlers by action name; the names are those of duly.language.actions.ACTIONS."""

SIMULATED_HANDLERS: dict[str, ActionHandler] = {
    **ACTION_HANDLERS,
    "webhook": accept_webhook,
    **ACCEPTED_CRM_HANDLERS,
}
"""The handlers of a `duly simulate` run. An email goes to the run's own SMTP sink, as ever; a
webhook or a CRM write has its parameters checked as it would, and is then taken as accepted
without any connection, so its step goes on as when the receiver says yes: a simulation asks
what the team does, not whether the CRM is up (nor whether the worker's DULY_OUTBOUND_HOSTS,
which the simulating user may not share, lets it through)."""


def run(
    action: RunActionInput, settings: Settings, handlers: Mapping[str, ActionHandler] | None = None
) -> RunActionResult:
    """Run one action by name, with `handlers` (default: `ACTION_HANDLERS`).

    Raises:
        ApplicationError: The action is unknown (non-retryable), or it failed.
    """
    handlers = ACTION_HANDLERS if handlers is None else handlers
    handler = handlers.get(action.action)
    if handler is None:
        raise ApplicationError(
            f"no action named '{action.action}' is registered with this worker "
            f"(known: {', '.join(sorted(handlers))})",
            type="UnknownAction",
            non_retryable=True,
        )
    log = _log.bind(instance=action.instance_id, step=action.step, action=action.action)
    result = handler(action, settings)
    log.info("action_done", detail=result.detail)
    return result
