"""``manage.py plan_set <tenant> <plan> [--limit metric=value ...]``: an operator sets a tenant's plan."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.plans import PLANS, plans_markdown
from billing.quotas import usage_summary
from billing.services import plan_set
from falcon.errors import FalconError
from tenants.audit import Actor
from tenants.models import Tenant


def _parse_limit(text: str) -> tuple[str, Any]:
    name, sep, value = text.partition("=")
    if not sep:
        raise CommandError(f"--limit {text!r}: write metric=value (value 'unlimited' for no limit).")
    if value.strip().lower() in {"unlimited", "none", "null"}:
        return name.strip(), None
    if name.strip() == "features":
        return "features", [f.strip() for f in value.split(",") if f.strip()]
    return name.strip(), value.strip()


class Command(BaseCommand):
    help = "Place a tenant on a plan (self-hosting, or an operator's override of Stripe)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="the tenant's slug or id")
        parser.add_argument("plan", nargs="?", choices=list(PLANS), help="omit with --show")
        parser.add_argument(
            "--limit",
            action="append",
            default=[],
            metavar="METRIC=VALUE",
            help="Enterprise only: a per-tenant figure, e.g. --limit runs=5000000 --limit agents=unlimited",
        )
        parser.add_argument("--show", action="store_true", help="print the tenant's usage and limits")

    def handle(
        self, *args: Any, tenant: str, plan: str | None, limit: list[str], show: bool, **options: Any
    ) -> None:
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            try:
                found = Tenant.objects.filter(pk=uuid.UUID(tenant)).first()
            except ValueError:
                found = None
        if found is None:
            raise CommandError(f"No tenant {tenant!r}.")
        if plan is None:
            if not show:
                raise CommandError(f"Name a plan ({', '.join(PLANS)}) or use --show.\n\n{plans_markdown()}")
        else:
            overrides = dict(_parse_limit(item) for item in limit)
            try:
                sub = plan_set(
                    tenant=found, plan=plan, actor=Actor.system("cli:plan_set"), overrides=overrides
                )
            except FalconError as exc:
                raise CommandError(exc.message) from exc
            self.stdout.write(f"{found.slug} is on the {PLANS[sub.plan].name} plan.")
        if show:
            self.stdout.write(json.dumps(usage_summary(found), indent=2, default=str))
