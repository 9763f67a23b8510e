"""The expression sandbox is bounded: sizes, numbers and steps, refused early and clearly.

Every case here ran for seconds to minutes, or took gigabytes, in the plain Jinja2 sandbox.
Each is refused before the big value exists: where the numbers are in the definition, by the
load-time check (`duly validate`); otherwise by a LimitError when it is evaluated, which the
interpreter treats as any failed expression.
"""

from __future__ import annotations

import resource
from collections.abc import Iterator
from typing import Any

import pytest

from duly.language.expressions import (
    MAX_SIZE,
    ExpressionError,
    LimitError,
    evaluate,
    expression_problem,
    render,
    render_url,
    template_problem,
    url_template_problem,
)

# each would take seconds or gigabytes if it ran; as constants, validate refuses them
CONSTANT_BOMBS = [
    "9 ** (9 ** 9)",
    "('a' * 10 ** 9) | length",
    "[1] * 10 ** 9",
    "(10 ** 600) * (10 ** 700)",
    "'%0999999999d' % 1",
    "'%.999999999f' % 1.5",
    "'%*d' % (999999999, 1)",
    "'{:>999999999}'.format(1)",
    "'{:{w}}'.format(1, w=999999999)",
    "'a' | center(10 ** 9)",
    "'a\\nb' | indent(999999)",
    "5 | round(-10 ** 9)",
    "5 | round(10 ** 9, 'ceil')",
    "range(100000) | join('a' * 100000)",
    "'ab' | replace('', 'b' * 900000)",
    "'ab'.replace('', 'b' * 900000)",
    "'a'.zfill(10 ** 9)",
    "('\\t' * 1000).expandtabs(10 ** 6)",
    "(2).to_bytes(10 ** 9, 'big')",
    "range(100000) | map('center', 900000) | list | length",
    "[[1] * 1000] * 1000 | sum(start=[])",
    "{'a': 1} | tojson(10 ** 9)",
    "range(1000) | batch(10 ** 9, 'x') | list",
]


@pytest.fixture
def memory_capped() -> Iterator[None]:
    """This process limited to 1 GB more than it uses: a bomb that ran would fail, not swap."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    with open("/proc/self/statm") as statm:
        used = int(statm.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + 2**30, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("text", CONSTANT_BOMBS)
def test_a_constant_past_the_limits_is_refused_by_validate(text: str, memory_capped: None) -> None:
    problem = expression_problem(text)
    assert problem is not None and problem.startswith("expression goes past the sandbox's limits")
    problem = template_problem("Quote {{ " + text + " }}")
    assert problem is not None and "goes past the sandbox's limits" in problem


def test_a_constant_bomb_is_found_among_many_parts_and_after_one_that_fails() -> None:
    bomb = "{{ 9 ** (9 ** 9) }}"
    for template in ("{{ 2 * 2 }}" * 5_000 + bomb, "{{ 1 / 0 }}" + bomb, bomb + "{{ 1 / 0 }}"):
        problem = template_problem(template)
        assert problem is not None and "9 ** 387420489" in problem
    assert template_problem("{{ 2 * 2 }}" * 5_000 + "{{ 1 / 0 }}") is None  # a run-time error


@pytest.mark.parametrize("text", CONSTANT_BOMBS)
def test_the_same_bomb_built_from_data_is_a_limit_error_at_run_time(
    text: str, memory_capped: None
) -> None:
    # the constant moves into the data, where validate cannot see it
    with pytest.raises(LimitError, match="goes past the sandbox's limits"):
        evaluate(f"(x and ({text}))", {"x": True})


@pytest.mark.parametrize(
    ("text", "data"),
    [
        ("x ** y", {"x": 9, "y": 9**9}),
        ("s * n", {"s": "a", "n": 10**9}),
        ("s | center(n)", {"s": "a", "n": 10**9}),
        ("items | join(sep)", {"items": list(range(100_000)), "sep": "a" * 100_000}),
        ("n | round(p)", {"n": 5, "p": -(10**9)}),
    ],
)
def test_values_from_data_past_the_limits_are_refused_when_evaluated(
    text: str, data: dict[str, Any], memory_capped: None
) -> None:
    assert expression_problem(text) is None  # nothing to see at load time
    with pytest.raises(LimitError, match="goes past the sandbox's limits"):
        evaluate(text, data)


@pytest.mark.parametrize(
    "template",
    [
        # a billion rounds of an empty loop, over data or over ranges
        "{% for a in l %}{% for b in l %}{% for c in l %}{% endfor %}{% endfor %}{% endfor %}",
        "{% for a in range(100000) %}{% for b in range(100000) %}x{% endfor %}{% endfor %}",
        # a long scan, a hundred thousand times
        "{% for i in range(100000) %}{% if 'zz' in big %}{% endif %}{% endfor %}",
        # a macro that calls itself twice, thirty deep
        "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
        "{{ f(30) }}",
        # doubling a text forty times
        "{% set ns = namespace(x='ab') %}{% for i in range(40) %}{% set ns.x = ns.x ~ ns.x %}"
        "{% endfor %}{{ ns.x | length }}",
    ],
)
def test_a_template_that_would_run_for_ever_is_stopped_by_its_step_budget(
    template: str, memory_capped: None
) -> None:
    data = {"l": list(range(1000)), "big": "a" * 900_000}
    with pytest.raises(LimitError):
        render(template, data)


def test_the_budget_counts_steps_not_time_so_every_run_gives_the_same_answer() -> None:
    # workflow code must be deterministic: the same data is refused at the same point
    template = "{% for i in l %}{{ i }}{% endfor %}"
    answers = set()
    for _ in range(3):
        try:
            answers.add(render(template, {"l": list(range(200_000))}))
        except LimitError as exc:
            answers.add(str(exc))
    assert len(answers) == 1


@pytest.mark.parametrize(
    "text",
    [" or ".join(["x > 1"] * 2_000), "(" * 5_000 + "x" + ")" * 5_000, "[" * 5_000 + "]" * 5_000],
)
def test_an_expression_nested_too_deep_to_compile_is_refused_by_validate(text: str) -> None:
    problem = expression_problem(text)
    assert problem is not None and "nested" in problem and "at most 100" in problem
    with pytest.raises(ExpressionError):
        evaluate(text, {"x": 0})


def test_a_filter_or_test_it_does_not_have_fails_as_an_expression_error_at_run_time() -> None:
    # validate refuses them (tests/broken/template-unknown-filter.yaml); a definition stored
    # before that check, or a rung's `with:` rendered at run time, fails as any expression does
    with pytest.raises(ExpressionError, match="No filter named 'uper'"):
        render("{{ name | uper }}", {"name": "Ana"})
    with pytest.raises(ExpressionError, match="No test named 'nonee'"):
        evaluate("name is nonee", {"name": "Ana"})


def test_lipsum_is_not_offered() -> None:
    with pytest.raises(ExpressionError, match="'lipsum' is undefined"):
        evaluate("lipsum(10 ** 9)", {})


def test_ordinary_expressions_and_templates_still_work() -> None:
    data = {"quote": {"amount": 60_000, "number": "Q-7", "lines": [1, 2, 3]}, "name": "Lee"}
    assert evaluate("quote.amount >= 50000 and quote.lines | length == 3", data) is True
    assert evaluate("2 ** 10 + ('ab' * 2) | length", data) == 1028
    assert evaluate("'x' in ['x', 'y'] and name ~ '!' == 'Lee!'", data) is True
    assert evaluate("'%05.1f' % 3.14159", data) == "003.1"
    assert render("Call {{ name }} about {{ quote.number }}", data) == "Call Lee about Q-7"
    total = "{% for n in quote.lines %}{{ n * 2 }}{% if not loop.last %},{% endif %}{% endfor %}"
    assert render(total, data) == "2,4,6"
    assert render("{{ '{:>6}'.format(name) }}|{{ name | center(7) }}", data) == "   Lee|  Lee  "
    assert render("{{ quote | tojson }}", data).startswith('{"amount": 60000')
    big = "a" * (MAX_SIZE - 10)
    assert render("{{ s | length }}", {"s": big}) == str(MAX_SIZE - 10)


def test_a_url_template_puts_data_into_path_and_query_encoded() -> None:
    data = {"id": "../../admin", "name": "a b&c=d/e", "dots": ".."}
    url = render_url("https://crm.example.com/leads/{{ id }}/{{ dots }}?q={{ name }}", data)
    assert url == "https://crm.example.com/leads/..%2F..%2Fadmin/%2E%2E?q=a%20b%26c%3Dd%2Fe"


@pytest.mark.parametrize(
    "template",
    ["{{ base }}/hook", "https://{{ host }}/hook", "https://crm.{{ tenant }}.example.com/x"],
)
def test_a_url_whose_host_comes_from_data_is_refused(template: str) -> None:
    assert url_template_problem(template) is not None
    with pytest.raises(ExpressionError, match="scheme and host must be written out"):
        render_url(template, {"base": "http://10.0.0.1", "host": "h", "tenant": "t"})
