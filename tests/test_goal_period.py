"""A goal's period is what reports measure by: a daily or monthly goal, which reports would
silently measure by week, is refused where it is written."""

from __future__ import annotations

from pathlib import Path

import pytest

from duly.language.errors import DefinitionError
from duly.language.loader import load_paths

ROOT = Path(__file__).resolve().parent.parent
QUOTES = ROOT / "definitions" / "processes" / "quote-follow-up.yaml"


@pytest.mark.parametrize("period", ["day", "month"])
def test_a_goal_measured_by_another_period_than_the_week_is_refused(
    tmp_path: Path, period: str
) -> None:
    source = QUOTES.read_text(encoding="utf-8")
    written = "goal: {attainment: 95%, period: week}"
    assert written in source
    path = tmp_path / "quote-follow-up.yaml"
    path.write_text(source.replace(written, f"goal: {{attainment: 95%, period: {period}}}"))
    with pytest.raises(DefinitionError) as caught:
        load_paths([path], root=ROOT / "definitions")
    (problem,) = caught.value.problems
    line = 1 + source.splitlines().index(
        next(text for text in source.splitlines() if text.startswith("goal:"))
    )
    assert problem.line == line
    assert problem.message == (
        f"goal period '{period}' is not measured: duly's reports, dashboard and summary count "
        "attainment by ISO week; write 'period: week' (or leave it out)"
    )


def test_a_weekly_goal_and_a_goal_without_a_period_load(tmp_path: Path) -> None:
    source = QUOTES.read_text(encoding="utf-8")
    path = tmp_path / "quote-follow-up.yaml"
    path.write_text(
        source.replace("goal: {attainment: 95%, period: week}", "goal: {attainment: 95%}")
    )
    loaded = load_paths([path], root=ROOT / "definitions")
    goal = loaded.processes["quote-follow-up"].spec.goal
    assert goal is not None and goal.period == "week"
