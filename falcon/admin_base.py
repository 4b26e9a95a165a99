"""What every page of the compliance console shares: read-only model pages (no add, change, delete or
bulk action; changes go through services, which audit them)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html


class _NoWrites:
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class ReadOnlyAdmin(_NoWrites, admin.ModelAdmin):
    """Read-only pages; the search box also finds a row by its id (a UUID pasted whole)."""

    show_full_result_count = False

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any], search_term: str) -> Any:
        term = search_term.strip()
        try:
            wanted = uuid.UUID(term)
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(pk=wanted), False

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        return {}


class ReadOnlyInline(_NoWrites, admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = True


def pretty_json(value: Any) -> str:
    """A JSON value as an indented block for a read-only page."""
    if value in (None, "", [], {}):
        return "—"
    return format_html(
        "<pre style='white-space:pre-wrap;margin:0'>{}</pre>", json.dumps(value, indent=2, default=str)
    )
