"""Random JSON at `POST /api/events`, signed: never a 5xx, and every event taken left instances
that answer their state."""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import quote as url_quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from support import poll

from duly.services.signing import signed_headers

from .conftest import SECRET, Api

pytestmark = pytest.mark.slow


class Raw:
    """JSON text written as is: numbers Python's `json` would not write (5,000 digits)."""

    def __init__(self, text: str) -> None:
        self.text = text


def to_json(value: Any) -> str:
    """`json.dumps`, but `Raw` goes in as written (and NaN/Infinity as Python writes them)."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{to_json(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(to_json(v) for v in value) + "]"
    return json.dumps(value)


ODD_STRINGS = st.sampled_from(
    [
        "",
        "\x00",
        "a\x00b",
        "\ud800",
        "a/b",
        "..",
        ".",
        "line\nbreak",
        "tab\t",
        "?x=1",
        "#1",
        "50%",
        "back\\slash",
        "Größe 東京 😀",
        "\u202eevil",
        "{{ 7 * 7 }}",
        "<script>",
    ]
)
LONG_STRINGS = st.sampled_from([300, 65_536, 70_000]).map(lambda n: "x" * n)
STRINGS = st.one_of(st.text(max_size=20), ODD_STRINGS, LONG_STRINGS)
NUMBERS = st.one_of(
    st.integers(min_value=-(10**22), max_value=10**22),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=18, max_value=6000).map(lambda n: Raw("9" * n)),
    st.sampled_from([Raw("1e400"), Raw("-1e999"), Raw("NaN"), Raw("-Infinity"), Raw("1.5e-400")]),
)
LEAVES = st.one_of(st.none(), st.booleans(), NUMBERS, STRINGS)


def nest(value: Any, levels: int, as_list: bool) -> Any:
    for _ in range(levels):
        value = [value] if as_list else {"n": value}
    return value


TREES = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(STRINGS, children, max_size=4)
    ),
    max_leaves=20,
)
DEEP = st.builds(nest, TREES, st.integers(min_value=1, max_value=60), st.booleans())
WIDE = st.integers(min_value=995, max_value=1005).map(lambda n: {f"k{i}": i for i in range(n)})
LONG = st.integers(min_value=9_995, max_value=10_005).map(lambda n: list(range(n)))
VALUES = st.one_of(TREES, DEEP, WIDE, LONG)
FRESH_KEYS = st.builds(lambda s: f"K-{uuid.uuid4().hex[:8]}{s}", st.text(max_size=6))
# a key as the trigger's template reads it: fresh (so the event starts an instance), or odd
KEYS = st.one_of(FRESH_KEYS, FRESH_KEYS, FRESH_KEYS, ODD_STRINGS, NUMBERS, LONG_STRINGS)
RECORDS = st.fixed_dictionaries(
    {},
    optional={
        "quote": st.fixed_dictionaries({"id": KEYS}, optional={"amount": NUMBERS}),
        "lead": st.fixed_dictionaries({"id": KEYS}, optional={"source": STRINGS}),
        "case": st.fixed_dictionaries({"id": KEYS}, optional={"priority": STRINGS}),
        "owner": st.one_of(st.sampled_from(["ana", "ben", "nobody"]), STRINGS),
    },
)
# ordinary JSON: what a CRM sends on a good day
TEXT = st.text(st.characters(exclude_categories=("Cc", "Cs")), max_size=30)
PLAIN = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**63 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        TEXT,
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(TEXT, children, max_size=4)
    ),
    max_leaves=15,
)
ODD_TOP_LEVEL = st.fixed_dictionaries(
    {}, optional={"extra": VALUES, "": VALUES, "k\x00": LEAVES, "a.b/../c": VALUES}
)
DATA = st.one_of(
    st.builds(lambda r, e: {**r, "extra": e}, RECORDS, PLAIN),
    st.builds(lambda r, o: {**r, **o}, RECORDS, ODD_TOP_LEVEL),
)
TRIGGERS = {"quote.sent": "quote", "lead.created": "lead", "case.opened": "case"}


def triggering(kind: str, key: Any, owner: Any, extra: Any) -> dict[str, Any]:
    """An event that starts an instance when its key is good: its record, owner and more."""
    return {"type": kind, "data": {TRIGGERS[kind]: {"id": key}, "owner": owner, "extra": extra}}


TRIGGERING = st.builds(
    triggering,
    st.sampled_from(sorted(TRIGGERS)),
    KEYS,
    st.sampled_from(["ana", "ben", "nobody"]),
    st.one_of(PLAIN, PLAIN, VALUES),
)
EVENTS = st.one_of(
    TRIGGERING,
    TRIGGERING,
    st.fixed_dictionaries(
        {
            "type": st.sampled_from([*TRIGGERS, "quote.accepted", "case.updated", "x"]),
            "data": DATA,
        }
    ),
)


@settings(
    max_examples=100,  # about 10 s here; a fifth of them start or reach instances
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(sent=EVENTS)
async def test_random_events_answer_2xx_or_4xx_and_what_is_taken_answers(
    api: Api, sent: dict[str, Any]
) -> None:
    body = to_json({"id": f"fuzz-{uuid.uuid4()}", **sent}).encode()
    response = await api.http.post(
        "/api/events", content=body, headers=signed_headers(SECRET, body)
    )
    assert response.status_code < 500, response.text
    taken = response.json().get("instances") if response.status_code == 200 else None
    event(f"{response.status_code}{' starting or reaching instances' if taken else ''}")
    assert 200 <= response.status_code < 300 or 400 <= response.status_code < 500
    if response.status_code >= 300:
        assert response.json()["detail"]  # says what was wrong
        return
    if response.json()["status"] == "unheard":  # no process listens to its type: kept, not taken
        assert response.status_code == 202 and response.json()["instances"] == []
        return
    assert response.json()["status"] == "accepted"
    for instance in response.json()["instances"]:
        await answers(api, instance)


async def answers(api: Api, instance: str) -> None:
    """The instance is shown with its live state (or has ended, visibly)."""

    async def shown() -> dict[str, Any] | None:
        answer = await api.get(f"/api/instances/{url_quote(instance, safe='/')}", "sam")
        if answer.status_code == 404:
            return None  # its row is written by the worker, just after the start
        assert answer.status_code == 200, answer.text
        detail: dict[str, Any] = answer.json()
        if detail["instance"]["status"] == "running" and detail["state"] is None:
            assert detail["state_error"] is None, detail["state_error"]
            return None
        return detail

    detail = await poll(shown, timeout=30, what=f"{instance} to answer")
    if detail["state"] is not None:
        assert detail["state"]["instance_id"] == instance
