"""``manage.py audit_verify [--tenant slug]``: checks the hash chains; exits 1 naming the first bad row."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from tenants.audit import audit_verify_platform, audit_verify_tenant
from tenants.models import AuditEvent, Tenant


class Command(BaseCommand):
    help = "Verify the audit log's hash chain of one tenant, or of all tenants and the platform's own."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", dest="tenant_slug", default=None)

    def handle(self, *args: Any, tenant_slug: str | None, **options: Any) -> None:
        tenants = Tenant.objects.order_by("slug")
        if tenant_slug:
            tenants = tenants.filter(slug=tenant_slug)
            if not tenants.exists():
                raise CommandError(f"No tenant with slug {tenant_slug!r}.")
        failures = 0
        for tenant in tenants.iterator():
            broken = audit_verify_tenant(tenant)
            if broken is None:
                count = AuditEvent.objects.filter(tenant=tenant).count()
                self.stdout.write(f"{tenant.slug}: ok ({count} events)")
            else:
                failures += 1
                self.stderr.write(
                    f"{tenant.slug}: BROKEN at event #{broken.seq} (id {broken.event_id}): {broken.reason}"
                )
        if not tenant_slug:
            broken = audit_verify_platform()
            if broken is None:
                count = AuditEvent.objects.filter(tenant__isnull=True).count()
                self.stdout.write(f"platform: ok ({count} events)")
            else:
                failures += 1
                self.stderr.write(
                    f"platform: BROKEN at event #{broken.seq} (id {broken.event_id}): {broken.reason}"
                )
        if failures:
            raise CommandError(f"{failures} audit chain(s) broken.", returncode=1)
