"""Data subject requests (GDPR articles 15 and 17) over a tenant's run data.

``subject_find`` looks for an identifier (an e-mail address, a customer id…) in everything a tenant's
runs carried: run inputs, outputs, errors and resume values, step payloads, trigger events and
notifications (inbound e-mails arrive as run inputs, so they are found there). ``subject_export``
returns every match; ``subject_erase`` replaces each field that holds the identifier with a marker,
keeping the rows (the runs, their metadata, tokens and costs, stay) and the audit chain, which records
both requests with a hash of the identifier, never the identifier itself.

Audit events that mention the person (a member's e-mail in ``member.added``) are kept: the log is the
controller's record of processing, and it is append-only; their count is reported so the answer to the
person can say so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import models, transaction
from django.db.models import F, Q, TextField
from django.db.models.functions import Cast

from agents.notifications.models import Notification
from agents.runs.models import Run, StepRun
from agents.triggers.models import TriggerEvent
from falcon.errors import InvalidInput
from tenants.audit import Actor, audit_record
from tenants.models import AuditEvent, Tenant

ERASED = "[erased: data subject request]"


@dataclass(frozen=True)
class Source:
    name: str
    model: type[models.Model]
    fields: tuple[str, ...]
    shown: tuple[str, ...]  # metadata exported with each match


SOURCES = (
    Source(
        "runs", Run, ("input", "output", "error", "resume_values"), ("id", "agent_id", "status", "created_at")
    ),
    Source("steps", StepRun, ("input", "output", "error"), ("id", "run_id", "key", "status", "created_at")),
    Source("trigger_events", TriggerEvent, ("message", "delivery_id"), ("id", "trigger_id", "received_at")),
    Source("notifications", Notification, ("subject", "body", "data"), ("id", "event", "created_at")),
)


def _identifier(value: str) -> str:
    value = value.strip()
    if len(value) < 3:
        raise InvalidInput("The identifier must be at least 3 characters.", field="identifier")
    return value


def _fingerprint(identifier: str) -> str:
    return hashlib.sha256(identifier.lower().encode()).hexdigest()


def _text(field: Any) -> Any:
    if isinstance(field, models.CharField | models.TextField):
        return F(field.name)
    return Cast(field.name, TextField())


def _matching(source: Source, tenant: Tenant, identifier: str) -> tuple[Any, list[str]]:
    """The rows of ``source`` holding the identifier, each annotated with which fields hold it."""
    annotations = {f"_t_{name}": _text(source.model._meta.get_field(name)) for name in source.fields}
    queryset = source.model.objects.filter(tenant=tenant).annotate(**annotations)  # type: ignore[attr-defined]
    condition = Q()
    for name in source.fields:
        condition |= Q(**{f"_t_{name}__icontains": identifier})
    return queryset.filter(condition), [f"_t_{name}" for name in source.fields]


def subject_find(tenant: Tenant, identifier: str) -> dict[str, list[dict[str, Any]]]:
    identifier = _identifier(identifier)
    found: dict[str, list[dict[str, Any]]] = {}
    needle = identifier.lower()
    for source in SOURCES:
        queryset, text_fields = _matching(source, tenant, identifier)
        rows = []
        for row in queryset.order_by("pk").values(*source.shown, *source.fields, *text_fields):
            holding = [name for name in source.fields if needle in str(row[f"_t_{name}"] or "").lower()]
            rows.append(
                {
                    **{k: row[k] for k in source.shown},
                    "fields": {name: row[name] for name in holding},
                }
            )
        found[source.name] = rows
    return found


def subject_export(*, tenant: Tenant, identifier: str, actor: Actor) -> dict[str, Any]:
    identifier = _identifier(identifier)
    found = subject_find(tenant, identifier)
    mentions = AuditEvent.objects.filter(tenant=tenant).annotate(_t=Cast("changes", TextField()))
    kept = mentions.filter(Q(_t__icontains=identifier) | Q(target_id__iexact=identifier)).count()
    counts = {name: len(rows) for name, rows in found.items()}
    with transaction.atomic():
        _audit_subject(tenant, actor, "subject.exported", identifier, counts)
    return {
        "tenant": tenant.slug,
        "identifier": identifier,
        "generated_at": datetime.now(UTC).isoformat(),
        "found": found,
        "counts": counts,
        "audit_events_mentioning": kept,
    }


def _erase(value: Any, json_field: bool) -> Any:
    if json_field:
        return {"erased": ERASED, "at": datetime.now(UTC).isoformat()}
    return ERASED


@transaction.atomic
def subject_erase(*, tenant: Tenant, identifier: str, actor: Actor) -> dict[str, int]:
    """Replaces every field of the tenant's run data that holds ``identifier`` with a marker."""
    identifier = _identifier(identifier)
    needle = identifier.lower()
    counts: dict[str, int] = {}
    for source in SOURCES:
        queryset, _ = _matching(source, tenant, identifier)
        erased = 0
        for row in queryset.select_for_update(of=("self",)).order_by("pk"):
            changes = {}
            for name in source.fields:
                field = source.model._meta.get_field(name)
                if needle in str(getattr(row, f"_t_{name}") or "").lower():
                    changes[name] = _erase(getattr(row, name), isinstance(field, models.JSONField))
            if changes:
                source.model.objects.filter(pk=row.pk).update(**changes)  # type: ignore[attr-defined]
                erased += 1
        counts[source.name] = erased
    _audit_subject(tenant, actor, "subject.erased", identifier, counts)
    return counts


def _audit_subject(
    tenant: Tenant, actor: Actor, action: str, identifier: str, counts: dict[str, int]
) -> None:
    """A data subject request on the tenant's chain: the identifier only as its fingerprint."""
    fingerprint = _fingerprint(identifier)
    audit_record(
        tenant=tenant,
        actor=actor,
        action=action,
        target_type="data_subject",
        target_id=fingerprint[:32],
        after={"identifier_sha256": fingerprint, **counts},
    )
