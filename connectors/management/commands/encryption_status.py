"""``manage.py encryption_status``: how many data keys each master key wraps, and what may be removed."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db.models import Count

from connectors.crypto import active_master_key_id
from connectors.models import TenantKey


class Command(BaseCommand):
    help = "Report how many tenant data keys each master key id wraps."

    def handle(self, *args: Any, **options: Any) -> None:
        active = active_master_key_id()
        counts = dict(TenantKey.objects.values_list("master_key_id").annotate(n=Count("pk")))
        configured = [key_id for key_id, _ in settings.FALCON_ENCRYPTION_KEYS]
        for key_id in configured + sorted(set(counts) - set(configured)):
            role = "active" if key_id == active else ("configured" if key_id in configured else "MISSING")
            self.stdout.write(f"{key_id}: {counts.get(key_id, 0)} data key(s) [{role}]")
        unused = [k for k in configured if k != active and not counts.get(k)]
        if unused:
            self.stdout.write(
                f"No data key uses {', '.join(unused)}: safe to remove from FALCON_ENCRYPTION_KEYS."
            )
