"""``manage.py tenant_network_allow <tenant> <cidr> [--reason R] [--remove] [--list]``.

Lets one tenant's connectors reach a private network (a self-hosted database, an internal API), inside
what ``FALCON_ALLOWED_PRIVATE_NETWORKS`` permits for the whole installation. Audited in the tenant's log.
The platform's own services stay unreachable whatever is allowed.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connectors.models import NetworkAllowance
from connectors.services import network_allow, network_disallow
from falcon.errors import FalconError
from tenants.audit import Actor
from tenants.models import Tenant


class Command(BaseCommand):
    help = "Allow (or --remove) a private network for one tenant's connectors; --list shows them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="the tenant's slug")
        parser.add_argument("cidr", nargs="?", help="e.g. 10.20.0.0/16")
        parser.add_argument("--reason", default="", help="why (kept in the audit log)")
        parser.add_argument("--remove", action="store_true", help="take the allowance back")
        parser.add_argument("--list", action="store_true", help="list the tenant's allowances")

    def handle(self, *args: Any, tenant: str, cidr: str | None, reason: str, **options: Any) -> None:
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"No tenant with the slug {tenant!r}.")
        actor = Actor.system("cli:tenant_network_allow")
        try:
            if cidr and options["remove"]:
                removed = network_disallow(tenant=found, cidr=cidr, actor=actor)
                self.stdout.write(f"Removed {cidr}." if removed else f"{cidr} was not allowed.")
            elif cidr:
                allowance = network_allow(tenant=found, cidr=cidr, reason=reason, actor=actor)
                self.stdout.write(f"{found.slug} may reach {allowance.cidr}.")
            elif not options["list"]:
                raise CommandError("Give a CIDR (or --list).")
        except FalconError as exc:
            raise CommandError(exc.message) from exc
        for row in NetworkAllowance.objects.filter(tenant=found).order_by("cidr"):
            if options["list"]:
                self.stdout.write(f"{row.cidr}\t{row.reason}")
