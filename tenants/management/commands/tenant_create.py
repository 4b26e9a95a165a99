"""``manage.py tenant_create <slug> --owner-email E [--name N]``: an operator creates a tenant."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from falcon.errors import FalconError
from tenants.audit import Actor
from tenants.models import User
from tenants.services import tenant_create


class Command(BaseCommand):
    help = "Create a tenant with an owner (the owner's account is created when missing)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("slug")
        parser.add_argument("--owner-email", required=True)
        parser.add_argument("--name", default="")

    def handle(self, *args: Any, slug: str, owner_email: str, name: str, **options: Any) -> None:
        email = owner_email.strip().lower()
        if "@" not in email:
            raise CommandError(f"--owner-email {owner_email!r} is not an e-mail address.")
        with transaction.atomic():
            owner = User.objects.filter(email__iexact=email).first()
            created_user = owner is None
            if owner is None:
                owner = User.objects.create_user(email=email)
            try:
                tenant = tenant_create(
                    slug=slug, name=name or slug, owner=owner, actor=Actor.system("cli:tenant_create")
                )
            except FalconError as exc:
                raise CommandError(exc.message) from exc
        self.stdout.write(f"Created tenant {tenant.slug} ({tenant.id}) owned by {owner.email}.")
        if created_user:
            self.stdout.write(
                f"{owner.email} has no password yet: they set one with 'Forgot password' at "
                "/accounts/password/reset/."
            )
