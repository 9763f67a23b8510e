"""Definitions: every process, and one with its flowchart."""

from __future__ import annotations

from .conftest import Api


async def test_definitions_are_listed_and_shown_with_their_diagrams(offline_api: Api) -> None:
    listed = await offline_api.get("/api/definitions", "ana")
    assert listed.status_code == 200
    assert [d["process"] for d in listed.json()] == [
        "lead-follow-up",
        "quote-follow-up",
        "support-case",
    ]
    quote = next(d for d in listed.json() if d["process"] == "quote-follow-up")
    assert quote["trigger_event"] == "quote.sent" and quote["team"] == "inbound-sales"

    shown = await offline_api.get(
        "/api/definitions/quote-follow-up", "ana", params={"highlight": "call-customer"}
    )
    assert shown.status_code == 200
    body = shown.json()
    assert body["mermaid"].startswith("flowchart TD")
    assert "class s_call_customer current" in body["mermaid"]
    assert body["svg"].startswith("<svg") and 'aria-current="step"' in body["svg"]
    assert body["spec"]["steps"]["call-customer"]["outcomes"] == {
        "reached": "send-summary",
        "voicemail": "wait-a-day",
        "lost": "lost",
    }

    missing = await offline_api.get("/api/definitions/nope", "ana")
    assert missing.status_code == 404
    assert "known: lead-follow-up, quote-follow-up, support-case" in missing.json()["detail"]
