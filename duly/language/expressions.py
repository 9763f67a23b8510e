"""Expressions (`when:`) and templates (`title:`, `with:`, `key:`) in Jinja2's sandbox.

Never `eval`: user text runs only inside SandboxedEnvironment, which refuses unsafe attribute
access. Missing data renders as empty text rather than failing, because instance data grows as the
process runs and a title must still render before a later step fills a field in.
"""

from __future__ import annotations

from typing import Any

from jinja2 import ChainableUndefined, TemplateSyntaxError
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.parser import Parser
from jinja2.sandbox import ImmutableSandboxedEnvironment

_env = ImmutableSandboxedEnvironment(undefined=ChainableUndefined, autoescape=False)


class ExpressionError(Exception):
    """An expression or template failed to evaluate on the instance's data."""


def template_problem(text: str) -> str | None:
    """Why a template does not parse, or None when it does."""
    try:
        _env.parse(text)
    except TemplateSyntaxError as exc:
        return f"template does not parse: {exc.message} (template line {exc.lineno})"
    return None


def expression_problem(text: str) -> str | None:
    """Why an expression does not parse, or None when it does."""
    if not text.strip():
        return "expression is empty"
    # parse only, as compile_expression does before it generates code: checking a thousand
    # expressions must not compile a thousand Python functions
    parser = Parser(_env, text, state="variable")
    try:
        parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            return f"expression does not parse: unexpected '{token.value}' after the expression"
    except TemplateSyntaxError as exc:
        message = str(exc.message).replace("'end of template'", "end of template")
        message = message.replace("end of template", "end of the expression")
        return f"expression does not parse: {message}"
    return None


def render(text: str, data: dict[str, Any]) -> str:
    """Render a template on instance data."""
    try:
        return _env.from_string(text).render(data)
    except (UndefinedError, SecurityError, TypeError, ValueError, ArithmeticError) as exc:
        raise ExpressionError(f"template {text!r} failed: {exc}") from exc


def render_value(value: Any, data: dict[str, Any]) -> Any:
    """Render every string inside a value (an action's `with:`), keeping its shape."""
    if isinstance(value, str):
        return render(value, data) if "{" in value else value
    if isinstance(value, dict):
        return {key: render_value(item, data) for key, item in value.items()}
    if isinstance(value, list):
        return [render_value(item, data) for item in value]
    return value


def evaluate(text: str, data: dict[str, Any]) -> Any:
    """Evaluate an expression on instance data; missing data is undefined, hence falsy."""
    try:
        result = _env.compile_expression(text, undefined_to_none=True)(**data)
    except (UndefinedError, SecurityError, TypeError, ValueError, ArithmeticError) as exc:
        raise ExpressionError(f"expression {text!r} failed: {exc}") from exc
    return result


def referenced_names(text: str) -> set[str]:
    """Top-level data names a template reads (for documentation and checks)."""
    from jinja2 import meta

    return set(meta.find_undeclared_variables(_env.parse(text)))
