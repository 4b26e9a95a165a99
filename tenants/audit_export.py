"""The audit log's filters and its export (JSON Lines or CSV, oldest first, with the hashes needed to
re-verify the chain outside Falcon): one home for the API's and the dashboard's."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from tenants.audit import event_fields
from tenants.models import AuditEvent, Tenant


def audit_filter(queryset: QuerySet[AuditEvent], params: dict[str, Any]) -> QuerySet[AuditEvent]:
    if "actor" in params:
        queryset = queryset.filter(actor_id=params["actor"])
    if "actor_type" in params:
        queryset = queryset.filter(actor_type=params["actor_type"])
    if "action" in params:
        action_name = params["action"]
        if action_name.endswith(".*"):
            queryset = queryset.filter(action__startswith=action_name[:-1])
        else:
            queryset = queryset.filter(action=action_name)
    if "target_type" in params:
        queryset = queryset.filter(target_type=params["target_type"])
    if "target_id" in params:
        queryset = queryset.filter(target_id=params["target_id"])
    if "since" in params:
        queryset = queryset.filter(occurred_at__gte=params["since"])
    if "until" in params:
        queryset = queryset.filter(occurred_at__lt=params["until"])
    return queryset


class _Echo:
    """A file-like object whose ``write`` hands the line back, for streaming ``csv.writer`` output."""

    def write(self, value: str) -> str:
        return value


def _export_row(event: AuditEvent) -> dict[str, Any]:
    """The hashed fields plus the hash: enough to re-verify the chain outside Falcon."""
    return {**event_fields(event), "hash": event.hash}


_EXPORT_COLUMNS = [
    "tenant",
    "seq",
    "id",
    "occurred_at",
    "actor_type",
    "actor_id",
    "actor_label",
    "action",
    "target_type",
    "target_id",
    "changes",
    "ip",
    "user_agent",
    "request_id",
    "prev_hash",
    "hash",
]


def audit_export_response(tenant: Tenant, events: QuerySet[AuditEvent], fmt: str) -> StreamingHttpResponse:
    rows = (_export_row(event) for event in events.order_by("seq").iterator(chunk_size=2000))
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    filename = f"audit-{tenant.slug}-{stamp}.{fmt}"
    if fmt == "csv":
        writer = csv.DictWriter(_Echo(), fieldnames=_EXPORT_COLUMNS)

        def csv_lines() -> Iterator[str]:
            yield writer.writeheader()
            for row in rows:
                yield writer.writerow({**row, "changes": json.dumps(row["changes"], sort_keys=True)})

        response = StreamingHttpResponse(csv_lines(), content_type="text/csv; charset=utf-8")
    else:
        lines = (json.dumps(row, sort_keys=True, default=str) + "\n" for row in rows)
        response = StreamingHttpResponse(lines, content_type="application/jsonl; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response
