"""The hysteresis rule: a monitor alerts once when it crosses its line, once when it recovers.

`threshold: {above: 40, recover_at: 35}` alerts when the value goes above 40 and clears once it
is back at 35 or below; a value between the two keeps the state it had, so a queue hovering
around 40 does not alert at every check. `below:` mirrors it. Without `recover_at` the line
itself is where the monitor recovers.
"""

from __future__ import annotations

from duly.language.model import Threshold
from duly.monitors.messages import State, Transition


def crossed(threshold: Threshold, value: float) -> bool:
    """Whether `value` is past the line: above `above`, or below `below`."""
    if threshold.above is not None:
        return value > threshold.above
    assert threshold.below is not None  # the model requires exactly one side
    return value < threshold.below


def recovered(threshold: Threshold, value: float) -> bool:
    """Whether `value` is back at or inside `recover_at` (the line itself when not given)."""
    if threshold.above is not None:
        line = threshold.recover_at if threshold.recover_at is not None else threshold.above
        return value <= line
    assert threshold.below is not None
    line = threshold.recover_at if threshold.recover_at is not None else threshold.below
    return value >= line


def next_state(
    threshold: Threshold, state: State, value: float | None
) -> tuple[State, Transition | None]:
    """The state after a check that measured `value`, and the transition, if it changed.

    Args:
        threshold: The monitor's threshold.
        state: The state before the check.
        value: The measured value; None (nothing to measure) leaves the state as it is.

    Returns:
        The new state, and `crossed` or `recovered` when it differs from `state`.
    """
    if value is None:
        return state, None
    if state == "ok" and crossed(threshold, value):
        return "alerting", "crossed"
    if state == "alerting" and recovered(threshold, value):
        return "ok", "recovered"
    return state, None


def describe(threshold: Threshold) -> str:
    """The line in words: `above 40 (recovers at 35)`."""
    side, line = (
        ("above", threshold.above)
        if threshold.above is not None
        else (
            "below",
            threshold.below,
        )
    )
    text = f"{side} {_number(line)}"
    if threshold.recover_at is not None:
        text += f" (recovers at {_number(threshold.recover_at)})"
    return text


def _number(value: float | None) -> str:
    if value is None:
        return "?"
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
