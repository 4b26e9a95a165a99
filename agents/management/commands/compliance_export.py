"""``manage.py compliance_export <tenant> --since DATE --until DATE --out FILE``: an evidence bundle."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from agents.compliance.evidence import bundle_build
from tenants.audit import Actor, audit_record
from tenants.management.lookup import tenant_by_slug


def _day(value: str, name: str) -> datetime:
    try:
        return datetime.combine(datetime.strptime(value, "%Y-%m-%d").date(), time.min, tzinfo=UTC)
    except ValueError as exc:
        raise CommandError(f"--{name} must be a date like 2026-11-01, not {value!r}.") from exc


class Command(BaseCommand):
    help = (
        "Write one tenant's evidence bundle for a period (audit events with the chain's verification, the "
        "agent and prompt versions live in it, run summaries, staff accesses, a SHA-256 manifest)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("tenant", help="the tenant's slug")
        parser.add_argument("--since", required=True, help="first day (UTC), e.g. 2026-10-01")
        parser.add_argument("--until", required=True, help="last day (UTC, included), e.g. 2026-10-31")
        parser.add_argument("--out", required=True, help="the bundle to write (a .zip)")

    def handle(self, *args: Any, tenant: str, since: str, until: str, out: str, **options: Any) -> None:
        found = tenant_by_slug(tenant)
        start, end = _day(since, "since"), _day(until, "until") + timedelta(days=1)
        if end <= start:
            raise CommandError("--until must not be before --since.")
        data = bundle_build(found, start, end)
        Path(out).write_bytes(data)
        with transaction.atomic():
            audit_record(
                tenant=found,
                actor=Actor.system("manage.py compliance_export"),
                action="audit.evidence_exported",
                target_type="tenant",
                target_id=found.pk,
                after={"since": since, "until": until, "bytes": len(data)},
            )
        self.stdout.write(
            f"Wrote {out} ({len(data)} bytes). Verify it with: manage.py compliance_verify {out}"
        )
