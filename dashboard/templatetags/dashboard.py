"""Template filters of the dashboard."""

from __future__ import annotations

import json
from typing import Any

from django import template

register = template.Library()
MAX_SHOWN_CHARS = 20_000


@register.filter
def pretty_json(value: Any) -> str:
    """A payload as indented JSON (already redacted by the run log), long ones cut with a marker."""
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=False)
    if len(text) > MAX_SHOWN_CHARS:
        return text[:MAX_SHOWN_CHARS] + f"\n… ({len(text) - MAX_SHOWN_CHARS:,} more characters)"
    return text


@register.filter
def get(mapping: Any, key: Any) -> Any:
    """``mapping|get:key`` — a dict lookup with a variable key."""
    return mapping.get(key) if isinstance(mapping, dict) else None


@register.filter
def humanize_field(name: str) -> str:
    """``max_tokens`` -> ``Max tokens``."""
    return str(name).replace("_", " ").replace(".", " ").strip().capitalize()
