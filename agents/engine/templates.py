"""Sandboxed Jinja2: templates and expressions over ``input``, ``steps``, ``run``, ``env``, ``item``.

A template that is exactly one ``{{ expression }}`` yields the expression's native value (a list stays
a list); anything else renders to a string. The sandbox refuses access to Python internals
(``__class__``, ``__globals__``, unsafe methods); undefined names are errors, not empty strings.

Work is bounded, so no template can stall the process every tenant shares: ``**``, ``*``, ``+``, ``%``
and ``~`` check the size of what they would build, calls and filters refuse size arguments beyond the
limit, loops share an iteration budget per render, and a rendered value is capped. Exceeding a limit
is a ``TemplateLimit`` (code ``template_limit``) that names the limit.
"""

from __future__ import annotations

import contextvars
import json
import math
import re
from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

MAX_VALUE_CHARS = 1024 * 1024  # a rendered value, and any string or list one operation builds
MAX_WORK_CHARS = 16 * 1024 * 1024  # characters all operations of one render may build together
MAX_ITERATIONS = 100_000  # loop iterations of one render, all loops together
MAX_INT_BITS = 100_000  # about 30,000 decimal digits
MAX_LIPSUM_PARAGRAPHS = 20
_FORMAT_WIDTH = re.compile(r"\d{7,}")

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)


class TemplateError(Exception):
    """A template that does not parse or does not render; the message says why."""

    code = "template_error"


class TemplateLimit(TemplateError):
    """A template that would do more work than one render may: names the limit."""

    code = "template_limit"


class _Budget:
    def __init__(self) -> None:
        self.iterations = MAX_ITERATIONS
        self.chars = MAX_WORK_CHARS


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("template_budget", default=None)


class _Rendering:
    """One budget for a render, shared by the nested renders of a mapping's strings."""

    def __enter__(self) -> _Budget:
        self.token = None
        budget = _budget.get()
        if budget is None:
            budget = _Budget()
            self.token = _budget.set(budget)
        return budget

    def __exit__(self, *exc: object) -> None:
        if self.token is not None:
            _budget.reset(self.token)


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str | list | tuple | dict | bytes) else 0


def _spend(chars: int) -> None:
    if chars > MAX_VALUE_CHARS:
        raise TemplateLimit(
            f"template_limit: a value may hold at most {MAX_VALUE_CHARS:,} characters or items"
        )
    budget = _budget.get()
    if budget is not None:
        budget.chars -= chars
        if budget.chars < 0:
            raise TemplateLimit(
                f"template_limit: one render may build at most {MAX_WORK_CHARS:,} characters in all"
            )


def _estimate(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """About how many characters ``value`` renders to, counting only until ``limit`` is passed (a list
    holding one large string a million times is not walked to the end)."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, dict):
            total += 2
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += 2
            stack.extend(item)
        else:
            total += 8
    return total


def _check_rendered(value: Any) -> Any:
    if _estimate(value) > MAX_VALUE_CHARS:
        raise TemplateLimit(f"template_limit: a rendered value may be at most {MAX_VALUE_CHARS:,} characters")
    return value


def _check_bits(bits: float) -> None:
    if bits > MAX_INT_BITS:
        raise TemplateLimit(f"template_limit: numbers may have at most {MAX_INT_BITS:,} bits")


def _check_int(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimit(f"template_limit: numbers may have at most {MAX_INT_BITS:,} bits")


def _check_arguments(args: Iterable[Any]) -> None:
    for arg in args:
        if isinstance(arg, int) and not isinstance(arg, bool) and abs(arg) > MAX_VALUE_CHARS:
            raise TemplateLimit(f"template_limit: a size argument may be at most {MAX_VALUE_CHARS:,}")


def _check_replace(text: Any, old: Any, new: Any) -> None:
    if isinstance(text, str) and isinstance(old, str) and isinstance(new, str) and old:
        _spend(len(text) + text.count(old) * max(0, len(new) - len(old)))


def _check_format(spec: Any) -> None:
    """A format string (``str.format`` or ``%``) may not ask for a width or precision of 7+ digits."""
    if isinstance(spec, str) and _FORMAT_WIDTH.search(spec):
        raise TemplateLimit("template_limit: format widths and precisions may be at most 6 digits")


# Filters whose output can be far larger than their inputs' sizes suggest: checked before they run.
_EXPANDING = frozenset({"join", "tojson", "json", "string", "pprint", "replace", "format", "list", "sum"})


def _bounded_filter(name: str, function: Any) -> Any:
    def bounded(*args: Any, **kwargs: Any) -> Any:
        _check_arguments([*args[1:], *kwargs.values()])
        if name in _EXPANDING and args:
            _check_rendered(list(args))
            if name == "format":
                _check_format(args[0])
            if name == "replace" and len(args) >= 3:
                _check_replace(args[0], args[1], args[2])
        result = function(*args, **kwargs)
        _spend(_size(result))
        return result

    for attribute in ("jinja_pass_arg",):  # keep pass_context/pass_environment markers
        if hasattr(function, attribute):
            setattr(bounded, attribute, getattr(function, attribute))
    return bounded


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    if n > MAX_LIPSUM_PARAGRAPHS or max > 100 or min > 100:
        raise TemplateLimit(f"template_limit: lipsum makes at most {MAX_LIPSUM_PARAGRAPHS} paragraphs")
    return str(generate_lorem_ipsum(n=n, html=html, min=min, max=max))


def _iterate(iterable: Any) -> Iterator[Any]:
    """Every loop's iterable: counts each iteration against the render's budget."""
    budget = _budget.get()
    for item in iterable:
        if budget is not None:
            budget.iterations -= 1
            if budget.iterations < 0:
                raise TemplateLimit(
                    f"template_limit: one render may loop at most {MAX_ITERATIONS:,} times in all"
                )
        yield item


class _BoundedCodeGenerator(CodeGenerator):
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.concat_bounded((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The sandbox with bounded work: see the module docstring."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"**", "*", "+", "%"})

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``steps.get.output`` means the step named ``get``, not ``dict.get``: keys win over methods."""
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        numbers = isinstance(left, int | float) and isinstance(right, int | float)
        if operator == "**" and numbers and abs(left) > 1 and right > 0:
            _check_bits(math.log2(abs(left)) * right)
        elif operator == "*":
            for sequence, times in ((left, right), (right, left)):
                if _size(sequence) and isinstance(times, int):
                    _spend(_size(sequence) * max(times, 0))
            if isinstance(left, int) and isinstance(right, int):
                _check_bits(left.bit_length() + right.bit_length())
        elif operator == "+" and _size(left) and _size(right):
            _spend(_size(left) + _size(right))
        elif operator == "%":
            _check_format(left)
        result = super().call_binop(context, operator, left, right)
        _check_int(result)
        if operator == "%":
            _spend(_size(result))
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_arguments([*args, *kwargs.values()])
        name = getattr(__obj, "__name__", "")
        if name in ("join", "replace", "format", "format_map") or (args and isinstance(args[0], list)):
            _check_rendered([*args, *kwargs.values()])
        if name == "replace" and len(args) >= 2:
            _check_replace(getattr(__obj, "__self__", ""), args[0], args[1])
        if name in ("format", "format_map"):
            # the sandbox wraps str.format: the format string is the wrapped method's object
            _check_format(getattr(getattr(__obj, "__wrapped__", __obj), "__self__", None))
        result = super().call(__context, __obj, *args, **kwargs)
        _spend(_size(result))
        return result

    def concat_bounded(self, parts: tuple[Any, ...]) -> str:
        _check_rendered(list(parts))
        texts = [str(part) for part in parts]
        _spend(sum(len(text) for text in texts))
        return "".join(texts)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(nodes.For):
            loop.iter = nodes.Call(nodes.Name("_falcon_iterate", "load"), [loop.iter], [], None, None)
        return tree


def _tojson(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


@lru_cache(maxsize=1)
def environment() -> BoundedSandbox:
    env = BoundedSandbox(undefined=StrictUndefined, autoescape=False)
    env.filters["tojson"] = _tojson
    env.filters["json"] = _tojson
    env.filters = {name: _bounded_filter(name, function) for name, function in env.filters.items()}
    env.finalize = _check_rendered
    env.globals["lipsum"] = _lipsum
    env.globals["_falcon_iterate"] = _iterate
    return env


def _expression_source(source: str) -> str:
    match = _SINGLE_EXPRESSION.match(source)
    return match.group("expr").strip() if match else source.strip()


@lru_cache(maxsize=4096)
def _compiled_expression(expr: str) -> Any:
    return environment().compile_expression(expr, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _compiled_template(source: str) -> Any:
    return environment().from_string(source)


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """The value of an expression (``{{ }}`` around it optional)."""
    with _Rendering():
        try:
            value = _compiled_expression(_expression_source(expression))(**context)
            if isinstance(value, Undefined):
                str(value)  # StrictUndefined raises, naming what is missing or unsafe
        except TemplateError:
            raise
        except TemplateSyntaxError as exc:
            raise TemplateError(f"syntax error: {exc.message}") from exc
        except RecursionError as exc:
            raise TemplateLimit("template_limit: the template recurses too deeply") from exc
        except (UndefinedError, SecurityError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise TemplateError(str(exc)) from exc
    return _check_rendered(value)


def render(template: Any, context: dict[str, Any]) -> Any:
    """Renders a template string, or every string inside a mapping or list."""
    if isinstance(template, dict):
        return {key: render(value, context) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, context) for value in template]
    if not isinstance(template, str) or "{" not in template:
        return template
    if _SINGLE_EXPRESSION.match(template):
        return evaluate(template, context)
    with _Rendering():
        try:
            return _render_capped(_compiled_template(template), context)
        except TemplateError:
            raise
        except TemplateSyntaxError as exc:
            raise TemplateError(f"syntax error: {exc.message}") from exc
        except RecursionError as exc:
            raise TemplateLimit("template_limit: the template recurses too deeply") from exc
        except (UndefinedError, SecurityError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
            raise TemplateError(str(exc)) from exc


def _render_capped(template: Any, context: dict[str, Any]) -> str:
    """Renders chunk by chunk, stopping as soon as the output passes the cap (never builds it all)."""
    chunks: list[str] = []
    size = 0
    for chunk in template.generate(**context):
        size += len(chunk)
        if size > MAX_VALUE_CHARS:
            raise TemplateLimit(
                f"template_limit: a rendered value may be at most {MAX_VALUE_CHARS:,} characters"
            )
        chunks.append(chunk)
    return "".join(chunks)


def truthy(expression: str, context: dict[str, Any]) -> bool:
    return bool(evaluate(expression, context))


def parse_errors(source: Any, *, expression: bool = False) -> list[str]:
    """Syntax errors of a template (or of each string in a mapping/list)."""
    problems: list[str] = []
    for text in _strings(source):
        try:
            if expression:
                environment().parse("{{ " + _expression_source(text) + " }}")
            else:
                environment().parse(text)
        except TemplateSyntaxError as exc:
            problems.append(f"template syntax error: {exc.message}")
    return problems


def step_references(source: Any, *, expression: bool = False) -> set[str]:
    """Step ids a template reads through ``steps.<id>`` or ``steps['<id>']``."""
    found: set[str] = set()
    for text in _strings(source):
        try:
            tree = environment().parse("{{ " + _expression_source(text) + " }}" if expression else text)
        except TemplateSyntaxError:
            continue
        for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
            target = getattr(node, "node", None)
            if not (isinstance(target, nodes.Name) and target.name == "steps"):
                continue
            if isinstance(node, nodes.Getattr):
                found.add(node.attr)
            elif (
                isinstance(node, nodes.Getitem)
                and isinstance(node.arg, nodes.Const)
                and isinstance(node.arg.value, str)
            ):
                found.add(node.arg.value)
    return found


def _strings(source: Any) -> list[str]:
    if isinstance(source, str):
        return [source]
    if isinstance(source, dict):
        return [text for value in source.values() for text in _strings(value)]
    if isinstance(source, list):
        return [text for value in source for text in _strings(value)]
    return []
