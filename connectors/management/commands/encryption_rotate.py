"""``manage.py encryption_rotate [--rekey-data]``: moves every data key under the first master key.

Row by row, each in its own short transaction, so the service keeps running; re-running resumes
where it stopped (rows already under the active key are skipped). ``--rekey-data`` also replaces
each tenant's data key and re-encrypts its secrets.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from connectors.crypto import active_master_key_id, data_key_replace, data_key_rewrap
from connectors.models import TenantKey


class Command(BaseCommand):
    help = "Re-wrap tenant data keys under the active master key (optionally replace the data keys)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--rekey-data", action="store_true", help="Also replace data keys and re-encrypt."
        )

    def handle(self, *args: Any, rekey_data: bool, **options: Any) -> None:
        active = active_master_key_id()
        started = timezone.now()
        rewrapped = rekeyed = secrets = 0
        for tenant_id in (
            TenantKey.objects.exclude(master_key_id=active).values_list("tenant_id", flat=True).iterator()
        ):
            rewrapped += int(data_key_rewrap(tenant_id))
        if rekey_data:
            # Tenants whose key was replaced after this command started are done (resumable).
            pending = TenantKey.objects.exclude(rotated_at__gte=started).values_list("tenant_id", flat=True)
            for tenant_id in pending.iterator():
                secrets += data_key_replace(tenant_id)
                rekeyed += 1
        self.stdout.write(
            f"Active master key: {active}. Re-wrapped {rewrapped} data key(s)."
            + (f" Replaced {rekeyed} data key(s), re-encrypted {secrets} secret(s)." if rekey_data else "")
        )
