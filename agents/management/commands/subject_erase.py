"""``manage.py subject_erase <tenant> <identifier> [--yes]``: a data subject's erasure request."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.compliance.subjects import subject_erase, subject_find
from falcon.errors import FalconError
from tenants.audit import Actor
from tenants.management.lookup import tenant_by_slug


class Command(BaseCommand):
    help = (
        "Replace every run input/output, step payload, trigger event and notification field of a tenant that "
        "holds an identifier with a redaction marker (runs, their metadata and the audit chain stay). "
        "Without --yes, only says what would be erased."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="the tenant's slug")
        parser.add_argument("identifier", help="an e-mail address or another identifier of the person")
        parser.add_argument("--yes", action="store_true", help="erase (otherwise: a dry run)")

    def handle(self, *args: Any, tenant: str, identifier: str, yes: bool, **options: Any) -> None:
        found = tenant_by_slug(tenant)
        try:
            if not yes:
                counts = {name: len(rows) for name, rows in subject_find(found, identifier).items()}
                self.stdout.write(f"Would erase: {counts}. Run again with --yes to erase.")
                return
            counts = subject_erase(
                tenant=found, identifier=identifier, actor=Actor.system("manage.py subject_erase")
            )
        except FalconError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"Erased: {counts}.")
