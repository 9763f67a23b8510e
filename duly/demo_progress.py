"""How far `duly demo` is: a progress bar on a terminal, a line a simulated week elsewhere.

The demo's driver reports a `DemoProgress` every time it moves simulated time on (thousands of
times a run); `reporter` picks what a person sees: a bar of the simulated period, with the
instances started so far, when the stream is a terminal; otherwise (CI, a pipe, a log file) one
plain line per simulated week, so a long run is visibly alive without flooding its log.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import click


@dataclass(frozen=True)
class DemoProgress:
    """Where a demo run is.

    Attributes:
        done: Simulated time covered so far, in days.
        total: The simulated period, in days: the weeks of new work plus the week that works
            it off.
        instances: Instances started so far.
        completions: Tasks completed so far by the simulated people.
    """

    done: float
    total: float
    instances: int
    completions: int

    @property
    def fraction(self) -> float:
        """The share of the simulated period covered, 0 to 1."""
        return 1.0 if self.total <= 0 else min(max(self.done / self.total, 0.0), 1.0)

    @property
    def weeks_done(self) -> int:
        """Whole simulated weeks covered."""
        return int(min(self.done, self.total) // 7)

    @property
    def weeks_total(self) -> int:
        """Simulated weeks in the period (the last one may be partial)."""
        return max(1, int(-(-self.total // 7)))


ProgressCallback = Callable[[DemoProgress], None]


class WeekLines:
    """Prints one line per simulated week covered, and one at the end."""

    def __init__(self, stream: TextIO, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream
        self.clock = clock
        self.began = clock()
        self.printed = 0
        self.ended = False

    def __call__(self, progress: DemoProgress) -> None:
        """Print a line when a new simulated week is covered (or the period is)."""
        finished = progress.fraction >= 1.0
        if self.ended or (progress.weeks_done <= self.printed and not finished):
            return
        self.printed, self.ended = progress.weeks_done, finished
        _write(
            self.stream,
            f"demo: week {min(progress.weeks_done, progress.weeks_total)} of "
            f"{progress.weeks_total} simulated ({progress.fraction:.0%}), "
            f"{progress.instances} instances started, {progress.completions} tasks completed, "
            f"{self.clock() - self.began:.0f} s",
        )

    def close(self) -> None:
        """Nothing to clear."""


class Bar:
    """A terminal progress bar of the simulated period, with the instances started so far."""

    STEPS = 1000

    def __init__(self, stream: TextIO) -> None:
        self.shown = 0
        self.text = ""
        self.bar: Any = click.progressbar(
            length=self.STEPS,
            label="Simulating",
            file=stream,
            show_eta=True,
            show_percent=True,
            item_show_func=lambda _: self.text or None,
        )
        self.bar.__enter__()

    def __call__(self, progress: DemoProgress) -> None:
        """Move the bar on (drawn only when it moved by a thousandth or more)."""
        target = round(progress.fraction * self.STEPS)
        if target <= self.shown:
            return
        self.text = (
            f"week {min(progress.weeks_done + 1, progress.weeks_total)}/{progress.weeks_total}, "
            f"{progress.instances} instances"
        )
        self.bar.update(target - self.shown, self.text)
        self.shown = target

    def close(self) -> None:
        """End the bar's line."""
        self.bar.__exit__(None, None, None)


def reporter(stream: TextIO | None = None) -> WeekLines | Bar:
    """A bar when `stream` (default stderr) is a terminal, else a line a simulated week."""
    target = stream if stream is not None else sys.stderr
    try:
        terminal = target.isatty()
    except (AttributeError, ValueError):
        terminal = False
    return Bar(target) if terminal else WeekLines(target)


def _write(stream: TextIO, line: str) -> None:
    try:
        stream.write(line + "\n")
        stream.flush()
    except (BrokenPipeError, ValueError):  # nobody reads any more: the demo goes on
        pass
