"""Expressions (`when:`) and templates (`title:`, `with:`, `key:`) in Jinja2's sandbox.

Never `eval`: user text runs only inside SandboxedEnvironment, which refuses unsafe attribute
access. Missing data renders as empty text rather than failing, because instance data grows as the
process runs and a title must still render before a later step fills a field in.

The sandbox is also bounded, because expressions run inside the worker, beside every other
instance (and the web app, in `duly up`):

- no value grows past `MAX_SIZE` (characters of text, items of a list, nested ones counted):
  `'a' * 10**9`, `[x] * 10**9`, a format width of a billion, are refused before they are made;
- no whole number grows past `MAX_INT_BITS` bits: `9 ** (9 ** 9)` is refused before it is
  computed;
- each evaluation has a budget of `MAX_COST` steps (an attribute, an item, a call, an operator,
  a loop round, a comparison: one each, and one more per 100 characters or items made or
  scanned): a template that loops for ever, or a little too long, is stopped.

The budget counts steps, never time, so the same data always gives the same answer (workflow
code must be deterministic). Where the numbers are in the definition itself, `duly validate`
refuses them; otherwise evaluating raises `ExpressionError`, which the interpreter handles as it
handles any other failed expression.
"""

from __future__ import annotations

import difflib
import re
import string
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache, update_wrapper
from typing import Any, cast
from urllib.parse import quote, urlsplit

from jinja2 import ChainableUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.parser import Parser
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

MAX_SIZE = 1_000_000
"""Characters of text, or items of a list or mapping (nested ones counted), one value may hold."""
MAX_INT_BITS = 4_096
"""Bits of a whole number (about 1,200 digits)."""
MAX_COST = 100_000
"""Steps one evaluation may take (about a tenth of a second)."""
MAX_FORMAT_WIDTH = 10_000
"""Width or precision of one field in a format string."""
MAX_ROUND_DIGITS = 100
"""Digits `round` may keep or drop."""
MAX_NESTING = 100
"""Levels of a parsed expression (operators, brackets, filters inside each other)."""
_BYTES_PER_STEP = 100  # characters or items made or scanned that count as one step


class ExpressionError(Exception):
    """An expression or template failed to evaluate on the instance's data."""


class LimitError(ExpressionError):
    """An expression went past a size, number or cost limit of the sandbox."""


class _BudgetError(LimitError):
    """An evaluation used up its steps."""


@dataclass
class _Budget:
    left: int


_budget: ContextVar[_Budget | None] = ContextVar("duly_expression_budget", default=None)


def _charge(steps: int) -> None:
    budget = _budget.get()
    if budget is None:
        return  # folding constants while compiling: sizes are still checked
    budget.left -= steps
    if budget.left < 0:
        raise _BudgetError(
            f"took more than {MAX_COST:,} steps; simplify it, or loop over less data"
        )


def _size_cost(size: int) -> int:
    return 1 + size // _BYTES_PER_STEP


def _weight(value: Any, limit: int = MAX_SIZE) -> int:
    """Characters and items in a value, nested ones counted; stops counting past `limit`."""
    if isinstance(value, str | bytes):
        return len(value)
    if not isinstance(value, list | tuple | dict | set | frozenset):
        return 1
    total, pending = 0, [value]
    while pending and total <= limit:
        item = pending.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, dict):
            total += 1 + len(item)
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 1 + len(item)
            pending.extend(item)
        else:
            total += 1
    _charge(_size_cost(total))
    return total


def _too_big(what: str, size: int) -> LimitError:
    return LimitError(f"{what} would hold {size:,} characters or items (the limit is {MAX_SIZE:,})")


def _check_size(what: str, size: int) -> None:
    if size > MAX_SIZE:
        raise _too_big(what, size)


def _check_int(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() > MAX_INT_BITS:
            raise LimitError(f"a number would have more than {MAX_INT_BITS:,} bits")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _sized(value: Any) -> bool:
    return isinstance(value, str | bytes | list | tuple)


# --- operators -----------------------------------------------------------------------------------


def _power(left: Any, right: Any) -> Any:
    if _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1:
        bits = (abs(left).bit_length() - 1) * right
        if bits > MAX_INT_BITS:
            raise LimitError(
                f"{left} ** {right} would have about {bits:,} bits (the limit is {MAX_INT_BITS:,})"
            )
    result = left**right
    _check_int(result)
    return result


def _repeat(left: Any, right: Any) -> Any:
    if _sized(left) and _is_int(right):
        _check_size("a repeated value", _weight(left) * max(right, 0))
    elif _sized(right) and _is_int(left):
        _check_size("a repeated value", _weight(right) * max(left, 0))
    elif _is_int(left) and _is_int(right):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise LimitError(f"a product would have more than {MAX_INT_BITS:,} bits")
    return left * right


def _add(left: Any, right: Any) -> Any:
    if _sized(left) and _sized(right):
        _check_size("a joined value", _weight(left) + _weight(right))
    result = left + right
    _check_int(result)
    return result


# %(name)-08.3f and the like: flags, then a width and a precision, each a number or '*'
_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_percent_format(text: str, args: Any) -> None:
    widths = 0
    for width, precision in _PERCENT_FIELD.findall(text):
        if "*" in (width, precision):
            raise LimitError("a format width or precision given as '*' is not allowed")
        widths += int(width or 0) + int(precision or 0)
        if int(width or 0) > MAX_FORMAT_WIDTH or int(precision or 0) > MAX_FORMAT_WIDTH:
            raise LimitError(f"a format width or precision over {MAX_FORMAT_WIDTH:,}")
    _check_size("a formatted text", len(text) + widths + _weight(args))


def _check_brace_format(text: str, args: Any) -> None:
    widths = 0
    for _, field, spec, _ in string.Formatter().parse(text):
        if field is None or not spec:
            continue
        if "{" in spec:
            raise LimitError("a format width taken from a value ('{:{w}}') is not allowed")
        for number in re.findall(r"\d+", spec):
            if int(number) > MAX_FORMAT_WIDTH:
                raise LimitError(f"a format width or precision over {MAX_FORMAT_WIDTH:,}")
            widths += int(number)
    _check_size("a formatted text", len(text) + widths + _weight(args))


def _modulo(left: Any, right: Any) -> Any:
    if isinstance(left, str):
        _check_percent_format(left, right)
    return left % right


_BINOPS: dict[str, Callable[[Any, Any], Any]] = {
    "**": _power,
    "*": _repeat,
    "+": _add,
    "%": _modulo,
}


# --- filters and methods -------------------------------------------------------------------------


def _lines(text: Any) -> int:
    return str(text).count("\n") + 1


def _check_filter(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Refuse a filter call whose result would be too large, before it is made."""
    value = args[0] if args else None
    rest = list(args[1:]) + list(kwargs.values())
    if name == "round":
        precision = args[1] if len(args) > 1 else kwargs.get("precision", 0)
        if _is_int(precision) and abs(precision) > MAX_ROUND_DIGITS:
            raise LimitError(f"round to more than {MAX_ROUND_DIGITS} digits")
        return
    if name == "sum":
        start = args[2] if len(args) > 2 else kwargs.get("start", 0)
        if not isinstance(start, int | float):
            raise LimitError("sum adds numbers only")
        return
    for item in rest:
        if _is_int(item) and abs(item) > MAX_SIZE:
            raise LimitError(f"'{name}' with {item:,} (the limit is {MAX_SIZE:,})")
    if name == "indent":
        width = args[1] if len(args) > 1 else kwargs.get("width", 4)
        prefix = len(width) if isinstance(width, str) else int(width or 0)
        _check_size("an indented text", _weight(value) + _lines(value) * prefix)
    elif name == "center":
        _check_size("a centred text", max(_weight(value), int(rest[0]) if rest else 80))
    elif name == "replace" and len(args) >= 3:
        text, old, new = str(value), str(args[1]), str(args[2])
        count = text.count(old) if old else len(text) + 1
        _check_size("a replaced text", len(text) + count * max(len(new) - len(old), 0))
    elif name == "join":
        items = list(value) if isinstance(value, Iterable) else []
        separator = args[1] if len(args) > 1 else kwargs.get("d", "")
        _check_size("a joined text", _weight(items) + len(items) * len(str(separator)))
    elif name == "wordwrap":
        width = int(args[1] if len(args) > 1 else kwargs.get("width", 79))
        wrap = str(args[3] if len(args) > 3 else kwargs.get("wrapstring") or "\n")
        lines = _weight(value) // max(width, 1) + _lines(value)
        _check_size("a wrapped text", _weight(value) + lines * len(wrap))
    elif name == "format":
        _check_percent_format(str(value), rest)
    elif name == "tojson":
        indent = args[1] if len(args) > 1 else kwargs.get("indent")
        if indent is not None and (not _is_int(indent) or indent > 16):
            raise LimitError("tojson indents by at most 16 spaces")
        _check_size("a JSON text", _weight(value) * (1 + int(indent or 0)))
    elif name in ("string", "pprint", "urlencode", "xmlattr", "list", "e", "escape"):
        # a list or mapping as text: brackets, quotes and commas around every item
        overhead = 1 if isinstance(value, str) else 4
        _check_size(f"'{name}' of a value", _weight(value) * overhead)


# filters that answer without walking their input
_CONSTANT_TIME_FILTERS = frozenset(
    {"length", "count", "default", "d", "first", "last", "attr", "abs", "bool", "safe"}
)


def _bounded_filter(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    pass_arg = getattr(function, "jinja_pass_arg", None)

    def bounded(*args: Any, **kwargs: Any) -> Any:
        skip = 1 if pass_arg is not None else 0  # the context or environment, if passed
        if len(args) > skip and isinstance(args[skip], Iterator):
            # a generator (from map, select...): made into a list once, so it can be measured
            args = (*args[:skip], list(args[skip]), *args[skip + 1 :])
        own = args[skip:]
        if name not in _CONSTANT_TIME_FILTERS and own and _sized(own[0]):
            _charge(_size_cost(len(own[0])))
        _check_filter(name, tuple(own), kwargs)
        result = function(*args, **kwargs)
        if _sized(result):
            _check_size(f"the result of '{name}'", len(result))
            _charge(_size_cost(len(result)))
        return result

    return update_wrapper(bounded, function)


# str methods whose int arguments are the size of what they make
_WIDTH_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})


def _check_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if isinstance(owner, str | list | tuple):
        _charge(_size_cost(len(owner)))
    if _is_int(owner) and name == "to_bytes":
        for item in (*args, *kwargs.values()):
            if _is_int(item) and item > MAX_SIZE:
                raise _too_big("to_bytes", item)
    if not isinstance(owner, str):
        return
    if name in _WIDTH_METHODS:
        for item in (*args, *kwargs.values()):
            if _is_int(item):
                size = len(owner) + owner.count("\t") * item if name == "expandtabs" else item
                _check_size(f"{name}()", size)
    elif name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        count = owner.count(old) if old else len(owner) + 1
        _check_size("a replaced text", len(owner) + count * max(len(new) - len(old), 0))
    elif name == "join" and args:
        items = list(args[0]) if isinstance(args[0], Iterable) else []
        _check_size("a joined text", _weight(items) + len(items) * len(owner))


# --- the environment -----------------------------------------------------------------------------


class _Metered(NodeTransformer):
    """Rewrites a template so loops, `~` and comparisons go through the budget."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _env_call("metered_iter", [cast(nodes.Expr, node.iter)], node.lineno)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _env_call("metered_concat", list(node.nodes), node.lineno)

    def visit_Compare(self, node: nodes.Compare) -> nodes.Node:
        self.generic_visit(node)
        return nodes.Compare(
            _env_call("metered_operand", [node.expr], node.lineno),
            [
                nodes.Operand(op.op, _env_call("metered_operand", [op.expr], node.lineno))
                for op in node.ops
            ],
            lineno=node.lineno,
        )


def _env_call(name: str, args: list[nodes.Expr], lineno: int) -> nodes.Call:
    return nodes.Call(nodes.EnvironmentAttribute(name), args, [], None, None, lineno=lineno)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """Jinja2's immutable sandbox with sizes, numbers and steps bounded (see the module)."""

    intercepted_binops = frozenset(_BINOPS)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        filters = cast(dict[str, Callable[..., Any]], self.filters)
        tests = cast(dict[str, Callable[..., Any]], self.tests)
        self.filters = {name: _bounded_filter(name, f) for name, f in filters.items()}
        self.tests = {name: _bounded_filter(name, f) for name, f in tests.items()}
        # lipsum(n=10**9) writes a billion paragraphs, and no process needs placeholder text
        self.globals.pop("lipsum", None)

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        metered = _Metered().visit(source)
        metered.set_environment(self)
        return super()._generate(metered, name, filename, defer_init)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        """An intercepted `**`, `*`, `+` or `%`, refused before it grows too large."""
        _charge(1)
        result = _BINOPS[operator](left, right)
        if _sized(result):
            _charge(_size_cost(len(result)))
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        """An attribute, as the sandbox allows; one step."""
        _charge(1)
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        """An item or a slice, as the sandbox allows; a step, plus the size of a slice made."""
        _charge(1)
        result = super().getitem(obj, argument)
        if isinstance(argument, slice) and _sized(result):
            _charge(_size_cost(len(result)))
        return result

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        """A call (a function, macro or method), refused when it would make too much."""
        _charge(1)
        _check_method(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if _sized(result):
            _check_size("a call's result", len(result))
            _charge(_size_cost(len(result)))
        elif isinstance(result, range):
            _charge(_size_cost(len(result)))
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """`str.format` and `format_map`, with their widths bounded."""
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text: str = value.__self__

        def bounded(*args: Any, **kwargs: Any) -> str:
            _check_brace_format(text, [*args, *kwargs.values()])
            return wrapped(*args, **kwargs)

        return update_wrapper(bounded, wrapped)

    def metered_iter(self, iterable: Any) -> Iterator[Any]:
        """A loop's items, one step each."""
        for item in iterable:
            _charge(1)
            yield item

    def metered_concat(self, *parts: Any) -> str:
        """`a ~ b ~ c`, refused when the text would be too large."""
        _charge(1)
        _check_size("a joined text", sum(_weight(part) for part in parts))
        return "".join(str(part) for part in parts)

    def metered_operand(self, value: Any) -> Any:
        """One side of a comparison: a step, plus one per 100 characters or items compared."""
        _charge(_size_cost(len(value)) if _sized(value) else 1)
        return value


def _finalize(value: Any) -> Any:
    """What `{{ ... }}` prints, refused when its text would be too large."""
    if isinstance(value, list | tuple | dict | set | frozenset):
        _check_size("a printed value", _weight(value) * 4)
    elif isinstance(value, str):
        _charge(_size_cost(len(value)))
    return value


def _bounded_join(chunks: Iterable[str]) -> str:
    parts, size = [], 0
    for chunk in chunks:
        size += len(chunk)
        if size > MAX_SIZE:
            raise _too_big("a rendered template", size)
        parts.append(chunk)
    return "".join(parts)


def _make_env(**options: Any) -> BoundedSandbox:
    env = BoundedSandbox(undefined=ChainableUndefined, autoescape=False, **options)
    env.concat = _bounded_join  # type: ignore[method-assign]
    return env


def _url_part(value: Any) -> Any:
    """A value in a URL: every character outside letters, digits and `-_.~` %-encoded."""
    text = str(_finalize(value))
    if text in (".", ".."):
        return text.replace(".", "%2E")  # a whole segment of dots would climb the path
    return quote(text, safe="")


_env = _make_env(finalize=_finalize)
_url_env = _make_env(finalize=_url_part)

# Errors that mean "this expression cannot be evaluated on this data"
_FAILURES = (
    TemplateSyntaxError,  # a filter or test it does not have, found when it is compiled
    UndefinedError,
    SecurityError,
    TypeError,
    ValueError,
    ArithmeticError,
    LookupError,
    RecursionError,
    MemoryError,
    LimitError,
)


class _Metering:
    """A fresh budget for one evaluation (nested evaluations share the outer one)."""

    def __enter__(self) -> None:
        self._token = _budget.set(_budget.get() or _Budget(MAX_COST))

    def __exit__(self, *exc: object) -> None:
        _budget.reset(self._token)


# Compiling is most of an evaluation's cost; a worker evaluates the same few texts again and again
@lru_cache(maxsize=256)
def _template(text: str, for_url: bool = False) -> Any:
    return (_url_env if for_url else _env).from_string(text)


@lru_cache(maxsize=256)
def _expression(text: str) -> Any:
    return _env.compile_expression(text, undefined_to_none=True)


# --- checking at load time -------------------------------------------------------------------


_TOO_DEEP = f"expression nested too deeply to read (at most {MAX_NESTING} levels)"


def template_problem(text: str) -> str | None:
    """Why a template does not parse or is over a limit with its own constants, or None."""
    try:
        tree = _env.parse(text)
    except TemplateSyntaxError as exc:
        return f"template does not parse: {exc.message} (template line {exc.lineno})"
    except RecursionError:
        return _TOO_DEEP
    return _unknown_name_problem(tree) or _constant_problem(tree)


def expression_problem(text: str) -> str | None:
    """Why an expression does not parse or is over a limit with its own constants, or None."""
    if not text.strip():
        return "expression is empty"
    # parse only, as compile_expression does before it generates code: checking a thousand
    # expressions must not compile a thousand Python functions
    parser = Parser(_env, text, state="variable")
    try:
        tree = parser.parse_expression()
        if not parser.stream.eos:
            token = parser.stream.current
            return f"expression does not parse: unexpected '{token.value}' after the expression"
    except TemplateSyntaxError as exc:
        message = str(exc.message).replace("'end of template'", "end of template")
        message = message.replace("end of template", "end of the expression")
        return f"expression does not parse: {message}"
    except RecursionError:
        return _TOO_DEEP
    return _unknown_name_problem(tree) or _constant_problem(tree)


def _unknown_name_problem(tree: nodes.Node) -> str | None:
    """A filter or test the sandbox does not have (`| uper`), which parses but never runs."""
    for node in _parts(tree):
        if not isinstance(node, nodes.Filter | nodes.Test):
            continue
        kind, known = (
            ("filter", _env.filters) if isinstance(node, nodes.Filter) else ("test", _env.tests)
        )
        if node.name not in known:
            close = difflib.get_close_matches(node.name, list(known), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            return f"no {kind} named '{node.name}'{hint}"
    return None


# nodes whose value depends on nothing but the text (and the sandbox's own globals)
_CONSTANT_NODES = (
    nodes.Const,
    nodes.List,
    nodes.Tuple,
    nodes.Dict,
    nodes.Pair,
    nodes.BinExpr,
    nodes.UnaryExpr,
    nodes.Concat,
    nodes.Filter,
    nodes.Test,
    nodes.CondExpr,
    nodes.Compare,
    nodes.Operand,
    nodes.Getitem,
    nodes.Getattr,
    nodes.Slice,
    nodes.Call,
    nodes.Keyword,
)
# what a constant part is worth checking: it computes something
_COMPUTING = (nodes.BinExpr, nodes.Concat, nodes.Filter, nodes.Call)


def _parts(node: nodes.Node) -> Iterator[nodes.Node]:
    """A node and everything under it (without recursion: a tree may be deep)."""
    pending = [node]
    while pending:
        part = pending.pop()
        yield part
        pending.extend(part.iter_child_nodes())


def _depth(tree: nodes.Node) -> int:
    deepest, pending = 0, [(tree, 1)]
    while pending:
        node, depth = pending.pop()
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in node.iter_child_nodes())
    return deepest


def _is_constant(node: nodes.Node) -> bool:
    for part in _parts(node):
        if isinstance(part, nodes.Name):
            if part.ctx != "load" or part.name not in _env.globals:
                return False
        elif isinstance(part, nodes.Filter) and part.node is None:
            return False  # a {% filter %} block: its input is the block
        elif not isinstance(part, _CONSTANT_NODES):
            return False
    return True


def _constant_problem(tree: nodes.Node) -> str | None:
    """Refuse a tree too deep to compile; evaluate each part made of constants alone."""
    depth = _depth(tree)
    if depth > MAX_NESTING:
        return (
            f"expression nested {depth} levels deep (at most {MAX_NESTING}); split it, e.g. "
            "with a decision step per condition"
        )
    parts: list[nodes.Node] = []
    pending = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, _COMPUTING) and _is_constant(node):
            parts.append(node)
        else:
            pending.extend(reversed(list(node.iter_child_nodes())))  # in the order written
    if not parts:
        return None
    # all parts in one compiled template (compiling is the slow part); only when that fails for
    # another reason (1/0), or runs out of steps together, are the first few tried one by one
    outcome = _evaluate_constants(parts)
    if outcome is not _TRY_EACH or len(parts) == 1:
        return outcome if isinstance(outcome, str) else None
    for part in parts[:_MAX_TRIED_ALONE]:
        outcome = _evaluate_constants([part])
        if isinstance(outcome, str):
            return outcome
    return None


_TRY_EACH = object()
_MAX_TRIED_ALONE = 100  # past these, a constant that goes past a limit is refused at run time


def _evaluate_constants(parts: list[nodes.Node]) -> str | object | None:
    """A problem with the first part past a limit, None if none is, or `_TRY_EACH`."""
    body: list[nodes.Node] = [
        nodes.Assign(nodes.Name(f"part{index}", "store"), part, lineno=1)
        for index, part in enumerate(parts)
    ]
    try:
        with _Metering():
            template = _env.from_string(nodes.Template(body, lineno=1))
            context = template.new_context({})
            for _ in template.root_render_func(context):
                pass
    except _BudgetError as exc:
        if len(parts) > 1:
            return _TRY_EACH
        return f"expression goes past the sandbox's limits: {exc}"
    except LimitError as exc:
        return f"expression goes past the sandbox's limits: {exc}"
    except Exception:  # noqa: BLE001 - any other failure is the runtime's to report
        return _TRY_EACH
    return None


# --- evaluating ----------------------------------------------------------------------------------


def render(text: str, data: dict[str, Any]) -> str:
    """Render a template on instance data."""
    try:
        with _Metering():
            return str(_template(text).render(data))
    except _FAILURES as exc:
        raise _failed(f"template {text!r}", exc) from exc


def render_url(text: str, data: dict[str, Any]) -> str:
    """Render a URL template, each value %-encoded: data fills path and query parts only.

    Raises:
        ExpressionError: The template failed, or a value would choose the scheme or the host.
    """
    scheme, separator, rest = text.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0]
    if "{" in scheme or "{" in host:
        raise ExpressionError(
            f"url {text!r}: the scheme and host must be written out; data may fill only the "
            "path and the query"
        )
    try:
        with _Metering():
            url = str(_template(text, for_url=True).render(data))
    except _FAILURES as exc:
        raise _failed(f"url {text!r}", exc) from exc
    if separator and urlsplit(url).netloc != host:
        raise ExpressionError(f"url {text!r}: its data changed the host")
    return url


def url_template_problem(text: str) -> str | None:
    """Why a webhook URL template lets data choose its scheme or host, or None."""
    scheme, _, rest = text.partition("://")
    host = rest.split("/", 1)[0].split("?", 1)[0]
    if "{" in scheme or "{" in host:
        return (
            "the scheme and host of a url must be written out; data may fill only the path "
            "and the query"
        )
    return None


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
        with _Metering():
            result = _expression(text)(**data)
    except _FAILURES as exc:
        raise _failed(f"expression {text!r}", exc) from exc
    return result


def _failed(what: str, exc: BaseException) -> ExpressionError:
    if isinstance(exc, LimitError):
        return LimitError(f"{what} goes past the sandbox's limits: {exc}")
    if isinstance(exc, RecursionError):
        return ExpressionError(f"{what} failed: it calls itself too deeply")
    if isinstance(exc, MemoryError):
        return ExpressionError(f"{what} failed: it ran out of memory")
    return ExpressionError(f"{what} failed: {exc}")


def referenced_names(text: str) -> set[str]:
    """Top-level data names a template reads (for documentation and checks)."""
    from jinja2 import meta

    return set(meta.find_undeclared_variables(_env.parse(text)))
