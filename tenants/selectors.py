"""Reads that shape what the API shows (annotations instead of attributes set on instances)."""

from __future__ import annotations

from typing import Any

from django.db.models import CharField, F, QuerySet, Value

from tenants.models import Tenant, User


def tenants_with_role(*, user: User | None = None, tenant_id: Any = None) -> QuerySet[Tenant]:
    """A user's tenants, each annotated with their ``role`` in it; or one tenant seen by an API key
    (``role`` null: a key acts by its scopes, not a role)."""
    if user is not None:
        return (
            Tenant.objects.filter(memberships__user=user)
            .annotate(role=F("memberships__role"))
            .order_by("slug")
        )
    return Tenant.objects.filter(pk=tenant_id).annotate(role=Value(None, output_field=CharField()))
