"""Sandboxed Jinja2: templates and expressions over ``input``, ``steps``, ``run``, ``env``, ``item``.

A template that is exactly one ``{{ expression }}`` yields the expression's native value (a list stays
a list); anything else renders to a string. The sandbox refuses access to Python internals
(``__class__``, ``__globals__``, unsafe methods); undefined names are errors, not empty strings.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\{\{|\}\}).)*)\}\}\s*$", re.DOTALL)


class TemplateError(Exception):
    """A template that does not parse or does not render; the message says why."""


def _tojson(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    env.filters["tojson"] = _tojson
    env.filters["json"] = _tojson
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
    try:
        value = _compiled_expression(_expression_source(expression))(**context)
        if isinstance(value, Undefined):
            str(value)  # StrictUndefined raises, naming what is missing or unsafe
        return value
    except TemplateSyntaxError as exc:
        raise TemplateError(f"syntax error: {exc.message}") from exc
    except (UndefinedError, SecurityError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(str(exc)) from exc


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
    try:
        return _compiled_template(template).render(**context)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"syntax error: {exc.message}") from exc
    except (UndefinedError, SecurityError, TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise TemplateError(str(exc)) from exc


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
