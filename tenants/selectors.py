"""Reads that shape what the API shows (annotations instead of attributes set on instances)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from allauth.account.models import EmailAddress
from django.db.models import CharField, F, QuerySet, Value

from tenants.models import Membership, Tenant, User
from tenants.permissions import Role


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


@dataclass(frozen=True)
class Founder:
    """The person a tenant's Free platform credit belongs to: its first owner."""

    user_id: Any
    email_verified: bool
    anchor_tenant_id: Any  # the first tenant they own: where their per-person counters live


def tenant_founder(tenant_id: Any) -> Founder | None:
    first_owner = (
        Membership.objects.filter(tenant_id=tenant_id, role=Role.OWNER).order_by("created_at", "pk").first()
    )
    if first_owner is None:
        return None
    anchor = (
        Membership.objects.filter(user_id=first_owner.user_id, role=Role.OWNER)
        .order_by("created_at", "pk")
        .values_list("tenant_id", flat=True)
        .first()
    )
    verified = EmailAddress.objects.filter(user_id=first_owner.user_id, verified=True).exists()
    return Founder(first_owner.user_id, verified, anchor)
