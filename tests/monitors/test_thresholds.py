"""The hysteresis rule, and what a monitor's workflow input is made of."""

from __future__ import annotations

import pytest

from duly.language.loader import Definitions
from duly.language.model import Threshold
from duly.monitors.scheduler import monitor_input
from duly.monitors.thresholds import describe, next_state

ABOVE = Threshold(above=40, recover_at=35)
BELOW = Threshold(below=90, recover_at=95)


@pytest.mark.parametrize(
    ("threshold", "values", "expected"),
    [
        # the support backlog: over 40 alerts; 36..40 keeps alerting; 35 recovers
        (
            ABOVE,
            [39, 40, 41, 45, 40, 36, 35, 41],
            ["", "", "crossed", "", "", "", "recovered", "crossed"],
        ),
        # without recover_at, the line itself is where it recovers
        (Threshold(above=40), [41, 41, 40, 41], ["crossed", "", "recovered", "crossed"]),
        # attainment below 90% alerts; it clears at 95%
        (BELOW, [92, 89.9, 93, 95, 80], ["", "crossed", "", "recovered", "crossed"]),
        # nothing to measure leaves the state as it was
        (ABOVE, [41, None, 30, None], ["crossed", "", "recovered", ""]),
    ],
)
def test_a_monitor_alerts_on_crossing_and_recovery_only(
    threshold: Threshold, values: list[float | None], expected: list[str]
) -> None:
    state = "ok"
    seen = []
    for value in values:
        state, transition = next_state(threshold, state, value)  # type: ignore[arg-type]
        seen.append(transition or "")
    assert seen == expected


def test_thresholds_read_as_words() -> None:
    assert describe(ABOVE) == "above 40 (recovers at 35)"
    assert describe(Threshold(below=92.5)) == "below 92.5"


def test_the_backlog_monitor_alerts_the_support_manager_in_berlin_weeks(
    definitions: Definitions,
) -> None:
    made = monitor_input(definitions.monitors["support-backlog"], definitions)
    # `manager` is support's (the process's team), weeks are the process goal's, in Berlin
    assert (made.manager_team, made.period, made.timezone) == ("support", "week", "Europe/Berlin")
