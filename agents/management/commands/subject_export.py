"""``manage.py subject_export <tenant> <identifier> [--out FILE]``: a data subject's access request."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from agents.compliance.subjects import subject_export
from falcon.errors import FalconError
from tenants.audit import Actor
from tenants.management.lookup import tenant_by_slug


class Command(BaseCommand):
    help = (
        "Export every run input/output, step payload, trigger event and notification of a tenant that holds "
        "an identifier."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="the tenant's slug")
        parser.add_argument("identifier", help="an e-mail address or another identifier of the person")
        parser.add_argument("--out", default="-", help="the JSON file to write (default: standard output)")

    def handle(self, *args: Any, tenant: str, identifier: str, out: str, **options: Any) -> None:
        found = tenant_by_slug(tenant)
        try:
            report = subject_export(
                tenant=found, identifier=identifier, actor=Actor.system("manage.py subject_export")
            )
        except FalconError as exc:
            raise CommandError(exc.message) from exc
        text = json.dumps(report, indent=2, default=str, ensure_ascii=False)
        if out == "-":
            sys.stdout.write(text + "\n")
        else:
            Path(out).write_text(text)
            counts = ", ".join(f"{k}: {v}" for k, v in report["counts"].items())
            self.stdout.write(f"Wrote {out} ({counts}).")
