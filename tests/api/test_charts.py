"""The dashboard's SVG charts: an outcome keeps its colour in every view, and its full name."""

from __future__ import annotations

import re
from pathlib import Path

from duly.charts import (
    PALETTE,
    OutcomeSlice,
    declared_outcomes,
    outcome_chart,
    outcome_colours,
)
from duly.language.loader import load_definitions

ROOT = Path(__file__).resolve().parents[2]
LONG = "event:lead.converted"


def _fills(markup: str) -> dict[str, str]:
    """Outcome -> fill of its bar segments (every segment of one outcome has one fill)."""
    found: dict[str, set[str]] = {}
    for fill, outcome in re.findall(
        r'<rect [^>]*fill="(#[0-9a-f]+)" data-outcome="([^"]+)"', markup
    ):
        found.setdefault(outcome, set()).add(fill)
    assert all(len(fills) == 1 for fills in found.values()), found
    return {outcome: fills.pop() for outcome, fills in found.items()}


def test_an_outcome_has_one_colour_in_every_view_of_a_process() -> None:
    spec = load_definitions(ROOT / "definitions").processes["lead-follow-up"].spec
    declared = declared_outcomes(spec)
    assert LONG in declared and declared[-2:] == ["event:", "(none)"]
    # a rep's view shows a few outcomes in one order, the team's more in another
    rep = outcome_chart(
        [("first-call", [OutcomeSlice("voicemail", 3), OutcomeSlice(LONG, 1)])],
        declared=declared,
    )
    team = outcome_chart(
        [
            ("qualify", [OutcomeSlice(LONG, 4), OutcomeSlice("(none)", 1)]),
            (
                "first-call",
                [OutcomeSlice("reached", 9), OutcomeSlice("voicemail", 5), OutcomeSlice(LONG, 2)],
            ),
        ],
        declared=declared,
    )
    rep_fills, team_fills = _fills(rep), _fills(team)
    assert rep_fills["voicemail"] == team_fills["voicemail"]
    assert rep_fills[LONG] == team_fills[LONG]
    # within a chart, outcomes are told apart
    assert len(set(team_fills.values())) == len(team_fills)


def test_declared_outcomes_get_distinct_colours_and_others_a_stable_one() -> None:
    declared = [f"outcome-{n}" for n in range(len(PALETTE))]
    colours = outcome_colours(declared, ["from-an-old-version"])
    assert len({colours[name] for name in declared}) == len(PALETTE)
    again = outcome_colours(declared[:3], ["from-an-old-version"])
    assert again["from-an-old-version"] == colours["from-an-old-version"]


def test_long_outcome_and_step_names_show_whole_on_hover_and_in_the_key() -> None:
    step = "a-step-with-a-rather-long-name"
    chart = str(
        outcome_chart(
            [(step, [OutcomeSlice(LONG, 3), OutcomeSlice("reached", 1)])],
            declared=["reached", LONG],
        )
    )
    # the bar's label is short, its <title> (a tooltip on hover) whole, first in its element
    assert f"<title>{step}</title>" in chart
    assert re.search(r"<text[^>]*><title>a-step-with-a-rather-long-name</title>a-step", chart)
    assert f"<title>{step}: {LONG}, 3 (75%)</title>" in chart
    # the key is a table with every name whole, its colour, visits and share
    key = chart[chart.index('<table class="table outcome-key">') :]
    rows = re.findall(
        r'<tr data-outcome="([^"]+)"><td><svg.*?fill="(#[0-9a-f]+)".*?</svg> ([^<]+)</td>'
        r'<td class="num">(\d+)</td><td class="num">([^<]+)</td>',
        key,
    )
    assert rows == [
        ("reached", _fills(chart)["reached"], "reached", "1", "25%"),
        (LONG, _fills(chart)[LONG], LONG, "3", "75%"),
    ]
    assert "…" not in key
