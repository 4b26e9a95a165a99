"""Connectors in the compliance console: what exists and who made it, never a secret or a ciphertext."""

from __future__ import annotations

from django.contrib import admin

from connectors.models import Connector, TenantKey
from falcon.admin_base import ReadOnlyAdmin


@admin.register(Connector)
class ConnectorAdmin(ReadOnlyAdmin):
    list_display = ["name", "kind", "tenant", "created_at", "last_tested_at", "last_test_ok"]
    list_filter = ["kind", "tenant"]
    search_fields = ["=id", "name", "tenant__slug"]
    list_select_related = ["tenant"]
    exclude = ["secrets", "secret_hints"]


@admin.register(TenantKey)
class TenantKeyAdmin(ReadOnlyAdmin):
    """Which master key wraps each tenant's data key (rotation progress); the wrapped key is not shown."""

    list_display = ["tenant", "generation", "master_key_id", "created_at", "rotated_at"]
    list_filter = ["master_key_id"]
    exclude = ["wrapped"]
