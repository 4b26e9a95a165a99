"""JSON from outside (request bodies, webhook deliveries, upstream APIs, model answers), parsed with a
bound on nesting: ``[[[[...`` 100,000 deep must be a clear 400, not a RecursionError in a shared process."""

from __future__ import annotations

import json
from typing import Any

MAX_JSON_DEPTH = 64


class JsonTooDeep(ValueError):
    """JSON nested deeper than ``MAX_JSON_DEPTH``."""

    def __init__(self) -> None:
        super().__init__(f"JSON may be nested at most {MAX_JSON_DEPTH} levels deep")


def nesting_exceeds(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether ``value`` nests lists and objects deeper than ``limit`` (walked without recursion)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def loads(raw: str | bytes, *, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """``json.loads`` that raises ``JsonTooDeep`` (a ``ValueError``) for nesting past ``max_depth``."""
    try:
        value = json.loads(raw)
    except RecursionError as exc:
        raise JsonTooDeep() from exc
    if nesting_exceeds(value, max_depth):
        raise JsonTooDeep()
    return value
