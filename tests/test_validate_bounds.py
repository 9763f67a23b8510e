"""`duly validate` on any file under 100 kB ends within seconds and a few hundred megabytes.

Each adversarial file (alias bombs, recursive aliases, deep nesting, a long flowchart, costly
expression constants) is checked by a real `duly validate` in a subprocess held to 300 MB of
address space and 10 s of CPU by `resource.setrlimit`: a file that blows up is killed and fails
here by name, where before it took minutes and gigabytes. The limits are loose on purpose (the
aim is 2 s and 300 MB on a quiet machine); no timing is asserted beyond them.
"""

from __future__ import annotations

import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MEMORY_BYTES = 300 * 2**20
CPU_SECONDS = 10
WALL_SECONDS = 120
MAX_FILE_BYTES = 100_000

HEAD = """process: adversarial
title: An adversarial definition
version: 1
calendar: us-east
team: inbound-sales
start: call
"""
STEPS = """steps:
  call: {kind: task, title: Call, outcomes: {done: finished}}
  finished: {kind: end}
"""


def _alias_bomb() -> str:
    lines = [HEAD + STEPS + 'x-0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 30):
        lines.append(f"x-{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 8) + "]")
    return "\n".join(lines) + "\n"


def _wide_alias_bomb() -> str:
    # one big anchored list, aliased as often as fits
    big = "x-big: &big [" + ", ".join(["lol"] * 2_000) + "]\n"
    return HEAD + STEPS + big + "x-many: [" + ", ".join(["*big"] * 8_000) + "]\n"


def _chain(steps: int) -> str:
    lines = [HEAD.replace("start: call", "start: s-0"), "steps:"]
    for i in range(steps):
        lines.append(f"  s-{i}: {{kind: task, title: S, outcomes: {{a: s-{i + 1}, b: e}}}}")
    lines += [f"  s-{steps}: {{kind: end}}", "  e: {kind: end}"]
    return "\n".join(lines) + "\n"


def _undefined_targets() -> str:
    # each outcome names a step that is not there but looks like every step that is: finding
    # a "did you mean" compared each with each (19 s of CPU for this file)
    lines = [HEAD.replace("start: call", "start: follow-up-with-the-customer-0"), "steps:"]
    for i in range(860):
        lines.append(
            f"  follow-up-with-the-customer-{i}: {{kind: task, title: S, "
            f"outcomes: {{a: follow-up-with-the-client-{i}, b: e}}}}"
        )
    lines.append("  e: {kind: end}")
    return "\n".join(lines) + "\n"


def _decision(when: str) -> str:
    return (
        HEAD.replace("start: call", "start: check")
        + "steps:\n"
        + "  check:\n    kind: decision\n"
        + f"    branches: [{{when: {when!r}, next: done}}]\n"
        + "    otherwise: done\n"
        + "  done: {kind: end}\n"
    )


ADVERSARIAL: dict[str, Callable[[], str]] = {
    "alias bomb": _alias_bomb,
    "wide alias bomb": _wide_alias_bomb,
    "recursive alias": lambda: HEAD + STEPS + "loop: &r [*r]\n",
    "recursive mapping alias": lambda: HEAD + STEPS + "loop: &r {a: *r, b: [*r]}\n",
    "flow lists nested deep": lambda: HEAD + STEPS + "x: " + "[" * 49_000 + "]" * 49_000 + "\n",
    "flow mappings nested deep": lambda: HEAD + STEPS + "x: " + "{a: " * 20_000 + "\n",
    "block lists nested deep": lambda: (
        HEAD + STEPS + "x:\n" + "".join(" " * i + "- \n" for i in range(1, 430))
    ),
    "unclosed flow list": lambda: HEAD + STEPS + "x: " + "[" * 90_000 + "\n",
    "long flowchart": lambda: _chain(1_300),
    "hundreds of undefined look-alike targets": _undefined_targets,
    "many keys": lambda: HEAD + STEPS + "".join(f"k{i}: {i}\n" for i in range(8_000)),
    "one long line": lambda: HEAD + STEPS + "x: " + "a" * 95_000 + "\n",
    "a huge number": lambda: HEAD + STEPS + "x: " + "9" * 95_000 + "\n",
    "a power tower": lambda: _decision("quote.amount > 9 ** (9 ** 9)"),
    "a billion-character text": lambda: _decision("('a' * 10 ** 9) | length > 1"),
    "a wide format": lambda: _decision("('%0999999999d' % 1) | length > 1"),
    "a loop of loops": lambda: (
        HEAD
        + STEPS.replace(
            "title: Call",
            'title: "{% for a in range(100000) %}'
            '{% for b in range(100000) %}{{ a * b }}{% endfor %}{% endfor %}"',
        )
    ),
    "thousands of constant parts": lambda: (
        HEAD + STEPS.replace("title: Call", 'title: "' + "{{ 2 * 2 }}" * 7_500 + '"')
    ),
    "many costly expressions": lambda: _decision(
        " or ".join(["('a' * 10 ** 5 * 9) | length > 1"] * 2_000)
    ),
}


def _limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_BYTES, MEMORY_BYTES))
    resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS))


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_validate_answers_within_bounds_on_an_adversarial_file(name: str, tmp_path: Path) -> None:
    text = ADVERSARIAL[name]()
    assert len(text.encode()) < MAX_FILE_BYTES, "the case must stay under 100 kB"
    path = tmp_path / "adversarial.yaml"
    path.write_text(text, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", "from duly.cli import app; app()", "validate", str(path)],
        cwd=ROOT,
        preexec_fn=_limited,
        capture_output=True,
        text=True,
        timeout=WALL_SECONDS,
        check=False,
    )
    # 0: valid, 1: refused with located problems; a kill by a limit is a negative code
    assert done.returncode in (0, 1), (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr + done.stdout
    if done.returncode == 1:
        assert "adversarial.yaml:" in done.stderr
    else:
        assert done.stdout.startswith("ok:"), done.stdout


def test_a_twenty_thousand_step_flowchart_validates_within_the_limits(tmp_path: Path) -> None:
    # checking the flowchart was quadratic: 10,000 steps took 7.1 s, so 20,000 took well over
    # the CPU limit; linear, they take a second or two
    path = tmp_path / "long.yaml"
    path.write_text(_chain(20_000), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-c", "from duly.cli import app; app()", "validate", str(path)],
        cwd=ROOT,
        preexec_fn=_limited,
        capture_output=True,
        text=True,
        timeout=WALL_SECONDS,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok:")
