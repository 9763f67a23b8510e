"""The registered actions against real receivers: an SMTP server and an HTTP server."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from temporalio.exceptions import ApplicationError

from activities.actions import ACTION_HANDLERS, SIMULATED_HANDLERS, run
from activities.messages import RunActionInput
from duly.language.actions import ACTIONS, expand_dotted
from duly.language.model import RungAction
from duly.settings import Settings
from duly.signing import verify

KEY = "quote-follow-up/Q-1/send-summary/1"


def action(name: str, **params: Any) -> RunActionInput:
    return RunActionInput(
        action=name,
        instance_id="quote-follow-up/Q-1",
        step="send-summary",
        visit=1,
        params=params,
        data={"quote": {"id": "Q-1", "amount": 1200}},
        idempotency_key=KEY,
    )


def test_every_action_the_language_knows_has_a_handler_and_no_more() -> None:
    assert set(ACTION_HANDLERS) == set(ACTIONS)


def test_a_rung_runs_a_registered_action_for_set_and_action_and_none_for_alerts() -> None:
    values = {"lead.status": "stalled"}
    assert RungAction(set=values).call == ("set", values)
    note = RungAction.model_validate({"action": "crm.note", "with": {"body": "late"}})
    assert note.call == ("crm.note", {"body": "late"})
    assert {call[0] for call in (RungAction(set=values).call, note.call) if call} <= set(
        ACTION_HANDLERS
    )
    assert RungAction(notify="manager").call is None
    assert RungAction(reassign="manager").call is None


def test_an_unknown_action_is_not_retried() -> None:
    with pytest.raises(ApplicationError, match="no action named 'fax'") as caught:
        run(action("fax"), Settings())
    assert caught.value.non_retryable


# --- set ------------------------------------------------------------------------------------


def test_a_simulations_webhooks_and_crm_writes_are_checked_and_accepted_unsent(receiver) -> None:
    url, received = receiver
    sealed = Settings(outbound_hosts="", hubspot_token="")  # as a simulation's: nothing reachable
    assert set(SIMULATED_HANDLERS) == set(ACTION_HANDLERS)
    posted = run(action("webhook", url=f"{url}/hook"), sealed, SIMULATED_HANDLERS)
    noted = run(
        action("crm.note", crm="hubspot", object="contact", id="C-1", body="called"),
        sealed,
        SIMULATED_HANDLERS,
    )
    assert "not sent" in posted.detail and "not logged" in noted.detail
    assert received.requests == []
    # their parameters are checked as ever: a mistake still takes the step's on_error
    for name, params in [
        ("webhook", {"url": "ftp://example.com"}),
        ("crm.note", {"crm": "hubspot", "object": "contact", "id": "C-1", "body": ""}),
        ("crm.update", {"crm": "zoho", "object": "contact", "id": "C-1", "fields": {"a": 1}}),
    ]:
        with pytest.raises(ApplicationError, match="ActionParametersError|expected one of") as bad:
            run(action(name, **params), sealed, SIMULATED_HANDLERS)
        assert bad.value.non_retryable


def test_set_expands_dotted_keys_into_nested_maps() -> None:
    result = run(
        action("set", **{"lead.status": "nurture", "lead.owner.id": "ana", "n": 1}), Settings()
    )
    assert result.data == {"lead": {"status": "nurture", "owner": {"id": "ana"}}, "n": 1}


def test_set_refuses_keys_that_disagree() -> None:
    with pytest.raises(ValueError, match="'lead.status' needs 'lead' to be a map"):
        expand_dotted({"lead": "x", "lead.status": "y"})
    with pytest.raises(ApplicationError) as caught:
        run(action("set", **{"lead.status": "y", "lead": "x"}), Settings())
    assert caught.value.non_retryable


# --- webhook --------------------------------------------------------------------------------


class Received:
    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.status = 200


@pytest.fixture
def receiver() -> Iterator[tuple[str, Received]]:
    """A real HTTP server on 127.0.0.1 that records what is POSTed to it."""
    received = Received()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.requests.append((self.path, dict(self.headers), body))
            self.send_response(received.status)
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()
    server.server_close()
    thread.join()


def test_webhook_posts_the_payload_signed_with_an_idempotency_key(receiver, monkeypatch) -> None:
    url, received = receiver
    monkeypatch.setenv("DULY_WEBHOOK_SECRET_TEST", "s3cret")
    result = run(
        action(
            "webhook",
            url=f"{url}/hooks/crm",
            payload={"quote": "Q-1", "status": "won"},
            secret_env="DULY_WEBHOOK_SECRET_TEST",
        ),
        Settings(),
    )
    [(path, headers, body)] = received.requests
    assert path == "/hooks/crm"
    assert json.loads(body) == {"quote": "Q-1", "status": "won"}
    assert headers["Idempotency-Key"] == KEY
    assert headers["Content-Type"] == "application/json"
    # signed as notifications and inbound events are: HMAC-SHA256 of "<timestamp>.<body>"
    timestamp = headers["X-Duly-Timestamp"]
    assert abs(int(timestamp) - time.time()) < 60
    expected = hmac.new(b"s3cret", timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    assert headers["X-Duly-Signature"] == f"sha256={expected}"
    assert verify("s3cret", timestamp, body, headers["X-Duly-Signature"])
    assert "200" in result.detail


def test_webhook_without_payload_sends_the_instance_data_unsigned(receiver) -> None:
    url, received = receiver
    run(action("webhook", url=url), Settings())
    [(_, headers, body)] = received.requests
    assert json.loads(body) == {"quote": {"id": "Q-1", "amount": 1200}}
    assert "X-Duly-Signature" not in headers
    assert "X-Duly-Timestamp" not in headers


def test_webhook_error_response_raises_so_temporal_retries(receiver) -> None:
    url, received = receiver
    received.status = 503
    with pytest.raises(ApplicationError, match="answered 503") as caught:
        run(action("webhook", url=url), Settings())
    assert not caught.value.non_retryable


def test_webhook_error_names_the_host_and_status_never_the_answer(receiver) -> None:
    # the failure reason becomes the managers' alert: another system's text stays out of it
    url, received = receiver
    received.status = 500
    with pytest.raises(ApplicationError) as caught:
        run(action("webhook", url=f"{url}/private/path?token=abc"), Settings())
    assert caught.value.message == f"webhook {url} answered 500"
    assert "token" not in str(caught.value)  # the answer's body ("ok") and path: left out


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5:7233/",
        "http://internal.example.com/hook",
        "http://crm.example.com.evil.test/hook",
        "http://crm.example.com@evil.test/hook",
        "http://crm.example.com\\@evil.test/hook",
    ],
)
def test_webhook_to_a_host_outside_the_allow_list_is_refused_unsent(target: str) -> None:
    settings = Settings(outbound_hosts="crm.example.com, *.hooks.example.org")
    with pytest.raises(ApplicationError, match="not in DULY_OUTBOUND_HOSTS") as caught:
        run(action("webhook", url=target), settings)
    assert caught.value.non_retryable
    assert caught.value.type == "OutboundHostRefused"


def test_webhook_hosts_listed_exactly_or_by_subdomain_are_posted_to(receiver) -> None:
    url, received = receiver
    run(action("webhook", url=url), Settings(outbound_hosts="crm.example.com,127.0.0.1"))
    assert len(received.requests) == 1
    from duly.notify.channels import outbound_allowed

    settings = Settings(outbound_hosts="*.hooks.example.org")
    assert outbound_allowed("https://a.hooks.example.org/x", settings)
    assert not outbound_allowed("https://hooks.example.org.evil.test/x", settings)
    assert not outbound_allowed("https://evilhooks.example.org/x", settings)
    assert outbound_allowed("https://anything.test/", Settings(outbound_hosts="*"))
    assert not outbound_allowed("https://anything.test/", Settings())  # default: this machine


def test_webhook_with_a_missing_secret_says_which_variable_to_set(receiver, monkeypatch) -> None:
    url, received = receiver
    monkeypatch.delenv("DULY_NOT_SET", raising=False)
    with pytest.raises(ApplicationError, match="DULY_NOT_SET .* is not set") as caught:
        run(action("webhook", url=url, secret_env="DULY_NOT_SET"), Settings())
    assert caught.value.non_retryable
    assert received.requests == []


# --- email ----------------------------------------------------------------------------------


def test_email_is_delivered_with_an_idempotency_key(smtp) -> None:
    settings, inbox = smtp
    run(
        action(
            "email",
            to="ana@example.com",
            cc=["maria@example.com"],
            subject="Your quote Q-1",
            body="Hello Ana,\nthanks for your time.",
        ),
        settings,
    )
    [envelope] = inbox.envelopes
    assert envelope.mail_from == "duly@acme.test"
    assert sorted(envelope.rcpt_tos) == ["ana@example.com", "maria@example.com"]
    message = message_from_bytes(envelope.content)
    assert message["Subject"] == "Your quote Q-1"
    assert message["X-Duly-Idempotency-Key"] == KEY
    assert message["Message-ID"].endswith("@acme.test>")
    assert "thanks for your time." in message.get_payload()


def test_email_retry_carries_the_same_message_id(smtp) -> None:
    settings, inbox = smtp
    for _ in range(2):
        run(action("email", to="ana@example.com", subject="s", body="b"), settings)
    ids = {message_from_bytes(e.content)["Message-ID"] for e in inbox.envelopes}
    assert len(ids) == 1


def test_email_without_recipient_is_not_retried() -> None:
    with pytest.raises(ApplicationError, match="'to' is empty") as caught:
        run(action("email", to="", body="b"), Settings())
    assert caught.value.non_retryable


def test_email_to_a_comma_separated_pair_is_refused_not_sent_to_both(smtp) -> None:
    settings, inbox = smtp
    with pytest.raises(ApplicationError, match="more than one address") as caught:
        run(action("email", to="ana@example.com, boss@evil.example", body="b"), settings)
    assert caught.value.non_retryable
    assert caught.value.type == "InvalidEmailAddress"
    assert inbox.envelopes == []


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("to", "ana@example.com\r\nBcc: boss@evil.example", "line break"),
        ("to", "ana@example.com\nX-Injected: 1", "line break"),
        ("to", "ana", "not an email address"),
        ("to", "@example.com", "not an email address"),
        ("cc", ["maria@example.com", "boss@evil.example, x@y.z"], "more than one address"),
    ],
)
def test_email_refuses_a_value_that_is_not_exactly_one_address(
    smtp, field: str, value: object, why: str
) -> None:
    settings, inbox = smtp
    params = {"to": "ana@example.com", "body": "b", field: value}
    with pytest.raises(ApplicationError, match=why) as caught:
        run(action("email", **params), settings)
    assert caught.value.non_retryable
    assert caught.value.type == "InvalidEmailAddress"
    assert f"'{field}'" in caught.value.message
    assert inbox.envelopes == []


def test_email_to_a_list_sends_to_each_and_a_name_may_go_with_an_address(smtp) -> None:
    settings, inbox = smtp
    to = ["Ana Lima <ana@example.com>", "maria@example.com"]
    run(action("email", to=to, subject="s", body="b"), settings)
    [envelope] = inbox.envelopes
    assert sorted(envelope.rcpt_tos) == ["ana@example.com", "maria@example.com"]
    assert (
        message_from_bytes(envelope.content)["To"]
        == "Ana Lima <ana@example.com>, maria@example.com"
    )


def test_email_subject_with_line_breaks_is_sent_on_one_line(smtp) -> None:
    settings, inbox = smtp
    subject = "Quote Q-1\r\nBcc: boss@evil.example\n\tmore"
    run(action("email", to="ana@example.com", subject=subject, body="b"), settings)
    [envelope] = inbox.envelopes
    message = message_from_bytes(envelope.content)
    assert message["Subject"] == "Quote Q-1 Bcc: boss@evil.example more"
    assert message["Bcc"] is None
    assert envelope.rcpt_tos == ["ana@example.com"]
