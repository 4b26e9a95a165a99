"""``manage.py tenant_legal_hold <tenant> --reason R`` / ``--lift``: retention deletes nothing while held."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from falcon.errors import FalconError
from tenants.audit import Actor
from tenants.management.lookup import tenant_by_slug
from tenants.services import tenant_legal_hold


class Command(BaseCommand):
    help = "Place or lift a legal hold on a tenant (audited in its log; its owners see it)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="the tenant's slug")
        parser.add_argument("--reason", default="", help="the case or matter the hold is for")
        parser.add_argument("--lift", action="store_true", help="lift the hold")

    def handle(self, *args: Any, tenant: str, reason: str, lift: bool, **options: Any) -> None:
        found = tenant_by_slug(tenant)
        try:
            held = tenant_legal_hold(
                tenant=found, actor=Actor.system("manage.py tenant_legal_hold"), reason=reason, lift=lift
            )
        except FalconError as exc:
            raise CommandError(exc.message) from exc
        if held.legal_hold_at is None:
            self.stdout.write(f"{tenant}: no legal hold; retention applies again.")
        else:
            since = f"{held.legal_hold_at:%Y-%m-%d %H:%M} UTC"
            self.stdout.write(f"{tenant}: on legal hold since {since} ({held.legal_hold_reason}).")
