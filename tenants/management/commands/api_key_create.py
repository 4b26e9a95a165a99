"""``manage.py api_key_create <tenant-slug> --name N --scopes S[,S]``: prints only the key on stdout."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from falcon.errors import FalconError
from tenants.audit import Actor
from tenants.management.lookup import tenant_by_slug
from tenants.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key for a tenant and print it (the only time it is shown)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant_slug")
        parser.add_argument("--name", required=True)
        parser.add_argument("--scopes", required=True, help="Comma-separated: read,write,run,admin,audit.")
        parser.add_argument("--expires-in-days", type=int, default=None)

    def handle(
        self,
        *args: Any,
        tenant_slug: str,
        name: str,
        scopes: str,
        expires_in_days: int | None,
        **options: Any,
    ) -> None:
        tenant = tenant_by_slug(tenant_slug)
        if expires_in_days is not None and expires_in_days < 1:
            raise CommandError("--expires-in-days must be at least 1.")
        expires_at = timezone.now() + timedelta(days=expires_in_days) if expires_in_days else None
        try:
            _, token = api_key_create(
                tenant=tenant,
                name=name,
                scopes=[s.strip() for s in scopes.split(",") if s.strip()],
                actor=Actor.system("cli:api_key_create"),
                acting_role=None,
                created_by=None,
                expires_at=expires_at,
            )
        except FalconError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(token)
