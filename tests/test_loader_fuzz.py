"""Whatever an admin types, the loader answers with located problems, never a traceback.

Random text and bytes, and the shipped definitions mutated the way hands and editors break
YAML (a line deleted, duplicated, swapped or re-indented; a value replaced by something of
another shape; a key deleted; stray characters typed in), go through the real loader. It may
accept the file or raise DefinitionError; any other exception is a crash an admin would see
as a traceback. Every problem it reports must point into the file with a usable location.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duly.language.errors import DefinitionError, Problem
from duly.language.loader import load_paths
from duly.language.source import parse_yaml

ROOT = Path(__file__).resolve().parent.parent
DEFINITIONS = ROOT / "definitions"
SHIPPED = {
    path.relative_to(DEFINITIONS).as_posix(): path.read_text(encoding="utf-8")
    for path in sorted(DEFINITIONS.glob("**/*.yaml"))
}
PROCESSES = sorted(name for name in SHIPPED if name.startswith("processes/"))
KIND_FOLDERS = ["processes/x.yaml", "calendars/x.yaml", "monitors/x.yaml", "org.yaml"]

# DULY_FUZZ_EXAMPLES=5000 for a longer hunt; 300 keeps the whole file well under 30 s.
FUZZ = settings(
    max_examples=int(os.environ.get("DULY_FUZZ_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
# Characters that mean something to YAML, Jinja or the duration and percentage parsers.
JUNK = st.text(alphabet="{}[]:,#&*!|>'\"%@`-?~ \t\n\r\\0123456789.eE+x", min_size=1, max_size=6)


def assert_located(problems: list[Problem], file: Path) -> None:
    assert problems, "a DefinitionError must carry at least one problem"
    for problem in problems:
        assert Path(problem.file).resolve() == file.resolve(), problem
        assert problem.line >= 1 and problem.column >= 1, problem
        assert problem.message.strip(), problem
        str(problem)  # the CLI prints each problem; rendering must not fail either
        problem.as_dict()


def load_written(relative: str, content: str | bytes) -> None:
    """Write a file into a fresh definitions-like folder and check it; only DefinitionError."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", errors="surrogatepass")
        try:
            load_paths([path], root=DEFINITIONS)
        except DefinitionError as exc:
            assert_located(exc.problems, path)


# --- (a) random text -------------------------------------------------------------------------


@FUZZ
@given(text=st.text())
def test_parse_yaml_on_random_text_raises_only_definition_errors(text: str) -> None:
    try:
        parse_yaml(text, "random.yaml")
    except DefinitionError as exc:
        for problem in exc.problems:
            assert problem.file == "random.yaml"
            assert problem.line >= 1 and problem.column >= 1 and problem.message


@FUZZ
@given(raw=st.binary(max_size=400), encoding=st.sampled_from(["utf-8", "latin-1", "utf-16"]))
def test_parse_yaml_on_decoded_random_bytes_raises_only_definition_errors(
    raw: bytes, encoding: str
) -> None:
    try:
        parse_yaml(raw.decode(encoding, errors="replace"), "random.yaml")
    except DefinitionError as exc:
        assert all(p.line >= 1 and p.column >= 1 and p.message for p in exc.problems)


@FUZZ
@given(text=st.text(max_size=300), where=st.sampled_from(KIND_FOLDERS))
def test_load_paths_on_random_text_raises_only_definition_errors(text: str, where: str) -> None:
    load_written(where, text)


@FUZZ
@given(raw=st.binary(max_size=300), where=st.sampled_from(KIND_FOLDERS))
def test_load_paths_on_random_bytes_raises_only_definition_errors(raw: bytes, where: str) -> None:
    # undecodable bytes are a problem with the file ("cannot read"), never a crash
    load_written(where, raw)


YAML_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


@FUZZ
@given(
    kind=st.sampled_from(["process", "calendar", "monitor", "users"]),
    body=st.dictionaries(
        st.sampled_from(
            [
                "title",
                "version",
                "calendar",
                "team",
                "goal",
                "trigger",
                "on",
                "start",
                "steps",
                "clocks",
                "max_visits",
                "timezone",
                "hours",
                "holidays",
                "special_hours",
                "schedule",
                "measure",
                "filter",
                "threshold",
                "notify",
                "teams",
            ]
        ),
        YAML_VALUES,
        max_size=6,
    ),
    name=YAML_VALUES,
)
def test_well_formed_yaml_of_any_shape_raises_only_definition_errors(
    kind: str, body: dict[str, object], name: object
) -> None:
    document = {kind: name, **body}
    where = {"process": "processes", "calendar": "calendars", "monitor": "monitors"}
    relative = f"{where[kind]}/x.yaml" if kind in where else "org.yaml"
    load_written(relative, yaml.safe_dump(document, allow_unicode=True))


# --- (b) the shipped definitions, mutated ----------------------------------------------------

REPLACEMENTS = st.one_of(
    st.text(max_size=10).map(lambda s: yaml.safe_dump(s, default_flow_style=True).strip()),
    st.integers(-1000, 10**9).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(str),
    st.sampled_from(
        [
            "[]",
            "{}",
            "[a, b]",
            "{a: 1}",
            "{by: x}",
            "null",
            "~",
            "true",
            "''",
            "-",
            "%",
            "0",
            "0%",
            "-1 hours",
            "PT0S",
            "1.5 business days",
            "user:",
            "round-robin:",
            "{{",
            "}}",
            "{{ x }",
            "a >=",
            "x.y",
            "start",
            "end",
            "9-5",
            "closed",
            "Europe/Nowhere",
            "*",
        ]
    ),
)
TOKEN = re.compile(r"[^\s:{}\[\],#\"']+")


def _delete_line(lines: list[str], data: st.DataObject) -> list[str]:
    index = data.draw(st.integers(0, len(lines) - 1), label="delete line")
    return lines[:index] + lines[index + 1 :]


def _duplicate_line(lines: list[str], data: st.DataObject) -> list[str]:
    index = data.draw(st.integers(0, len(lines) - 1), label="duplicate line")
    return lines[: index + 1] + lines[index:]


def _swap_lines(lines: list[str], data: st.DataObject) -> list[str]:
    first = data.draw(st.integers(0, len(lines) - 1), label="swap")
    second = data.draw(st.integers(0, len(lines) - 1), label="with")
    swapped = list(lines)
    swapped[first], swapped[second] = swapped[second], swapped[first]
    return swapped


def _reindent_line(lines: list[str], data: st.DataObject) -> list[str]:
    index = data.draw(st.integers(0, len(lines) - 1), label="re-indent line")
    shift = data.draw(st.sampled_from([-4, -2, -1, 0, 1, 2, 4]), label="by (0: a tab)")
    line = lines[index]
    stripped = line.lstrip(" ")
    if shift == 0:
        changed = "\t" + line
    else:
        changed = " " * max(0, len(line) - len(stripped) + shift) + stripped
    return lines[:index] + [changed] + lines[index + 1 :]


def _replace_token(lines: list[str], data: st.DataObject) -> list[str]:
    text = "\n".join(lines)
    tokens = list(TOKEN.finditer(text))
    if not tokens:
        return lines
    token = data.draw(st.sampled_from(tokens), label="token")
    value = data.draw(REPLACEMENTS, label="replaced by")
    return (text[: token.start()] + value + text[token.end() :]).split("\n")


def _delete_key(lines: list[str], data: st.DataObject) -> list[str]:
    keys = [i for i, line in enumerate(lines) if re.match(r"\s*[\w.-]+:", line)]
    if not keys:
        return lines
    index = data.draw(st.sampled_from(keys), label="delete key at line")
    indent = len(lines[index]) - len(lines[index].lstrip())
    end = index + 1
    while end < len(lines) and (
        not lines[end].strip() or len(lines[end]) - len(lines[end].lstrip()) > indent
    ):
        end += 1
    return lines[:index] + lines[end:]


def _insert_junk(lines: list[str], data: st.DataObject) -> list[str]:
    text = "\n".join(lines)
    at = data.draw(st.integers(0, len(text)), label="insert at")
    junk = data.draw(JUNK, label="junk")
    return (text[:at] + junk + text[at:]).split("\n")


MUTATIONS = [
    _delete_line,
    _duplicate_line,
    _swap_lines,
    _reindent_line,
    _replace_token,
    _delete_key,
    _insert_junk,
]


@FUZZ
@given(name=st.sampled_from(PROCESSES), data=st.data())
def test_mutated_shipped_process_loads_or_reports_located_problems(
    name: str, data: st.DataObject
) -> None:
    lines = SHIPPED[name].split("\n")
    for mutate in data.draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        lines = mutate(lines, data) or [""]
    load_written(name, "\n".join(lines))


@FUZZ
@given(
    name=st.sampled_from(sorted(set(SHIPPED) - set(PROCESSES))),
    data=st.data(),
)
def test_mutated_shipped_calendar_org_or_monitor_loads_or_reports_located_problems(
    name: str, data: st.DataObject
) -> None:
    lines = SHIPPED[name].split("\n")
    for mutate in data.draw(st.lists(st.sampled_from(MUTATIONS), min_size=1, max_size=3)):
        lines = mutate(lines, data) or [""]
    # a calendar named like a shipped one would be "defined twice": that is a fine answer too
    load_written(name, "\n".join(lines))


def test_an_unmutated_shipped_process_written_elsewhere_loads() -> None:
    # guards the harness: without it, a fuzz run where every file is refused would still pass
    for name in PROCESSES:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.parent.mkdir(parents=True)
            path.write_text(SHIPPED[name], encoding="utf-8")
            loaded = load_paths([path], root=DEFINITIONS)
            assert list(loaded.processes) == [Path(name).stem]


# --- inputs that once crashed the loader (or slipped through), kept as examples ---------------

CALENDAR = (
    'calendar: probe\ntimezone: UTC\nhours: {mon-fri: "09:00-17:00"}\nholidays: {country: %s}\n'
)
PROCESS = (
    "process: probe\ntitle: Probe\nversion: 1\ncalendar: us-east\nteam: inbound-sales\n"
    "start: first\nsteps:\n  first: %s\n  done: {kind: end}\n"
)


@pytest.mark.parametrize(
    ("relative", "text", "expected"),
    [
        pytest.param(
            "calendars/probe.yaml",
            CALENDAR % "__init__",
            (4, 21, "no public holidays known for country '__init__'"),
            id="holiday-country-naming-a-module-attribute",
        ),
        pytest.param(
            "calendars/probe.yaml",
            CALENDAR % "HolidayBase",
            (4, 21, "no public holidays known for country 'HolidayBase'"),
            id="holiday-country-naming-a-class",
        ),
        pytest.param(
            "processes/probe.yaml",
            PROCESS % "{kind: action, do: email, with: {to: x, template: [a]}, next: done}",
            (8, 60, "expected the name of a template in definitions/templates/, found a list"),
            id="email-template-given-as-a-list",
        ),
        pytest.param(
            "processes/probe.yaml",
            PROCESS % "{title: No kind, outcomes: {ok: done}}",
            (8, 3, "missing 'kind'; expected one of task, action, wait, decision, end"),
            id="step-without-kind",
        ),
        pytest.param(
            "processes/probe.yaml",
            PROCESS.replace("Probe", "Pro\x07be"),
            (2, 11, "YAML syntax error: the character '\\x07' (#x0007) is not allowed"),
            id="control-character",
        ),
        pytest.param(
            "processes/probe.yaml",
            PROCESS % "{kind: wait, for: %s seconds, next: done}" % ("1" * 40),
            (8, 28, "is too long; durations are at most ten years"),
            id="duration-with-forty-digits",
        ),
    ],
)
def test_input_that_once_crashed_the_loader_is_a_located_problem(
    relative: str, text: str, expected: tuple[int, int, str]
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / relative
        path.parent.mkdir(parents=True)
        path.write_text(text, encoding="utf-8")
        with pytest.raises(DefinitionError) as caught:
            load_paths([path], root=DEFINITIONS)
    line, column, message = expected
    assert [(p.line, p.column) for p in caught.value.problems] == [(line, column)]
    assert message in caught.value.problems[0].message
