"""Connectors in the compliance console: what exists and who made it, never a secret or a ciphertext."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from connectors.models import Connector, TenantKey


@admin.register(Connector)
class ConnectorAdmin(admin.ModelAdmin):
    list_display = ["name", "kind", "tenant", "created_at", "last_tested_at", "last_test_ok"]
    list_filter = ["kind"]
    search_fields = ["name", "tenant__slug"]
    list_select_related = ["tenant"]
    exclude = ["secrets", "secret_hints"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(TenantKey)
class TenantKeyAdmin(admin.ModelAdmin):
    """Which master key wraps each tenant's data key (rotation progress); the wrapped key is not shown."""

    list_display = ["tenant", "generation", "master_key_id", "created_at", "rotated_at"]
    list_filter = ["master_key_id"]
    exclude = ["wrapped"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
