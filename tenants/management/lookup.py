"""What the management commands share: the tenant a command names by its slug."""

from __future__ import annotations

from django.core.management.base import CommandError

from tenants.models import Tenant


def tenant_by_slug(slug: str) -> Tenant:
    """The tenant, or a CommandError saying there is none (exit status 1, no traceback)."""
    tenant = Tenant.objects.filter(slug=slug).first()
    if tenant is None:
        raise CommandError(f"No tenant with slug {slug!r}.")
    return tenant
