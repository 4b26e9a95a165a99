"""The audit log: who changed what, written in the changing transaction, hash-chained per tenant."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from uuid import UUID

from django.db import connection, transaction
from django.utils import timezone

from falcon.middleware import current_request_id
from tenants.models import AuditEvent, Tenant, tenant_lock

GENESIS_HASH = "0" * 64
SECRET_MARKERS = ("password", "secret", "token", "key_hash", "api_key", "credential")


@dataclass(frozen=True)
class Actor:
    """Who is acting, and from where: carried from the request (or CLI, or a task) into services."""

    type: str
    id: str
    label: str
    ip: str | None = None
    user_agent: str = ""
    request_id: str = ""

    @classmethod
    def system(cls, label: str) -> Actor:
        return cls(
            type=AuditEvent.ActorType.SYSTEM, id="", label=label, request_id=current_request_id() or ""
        )


def _json_safe(value: Any) -> Any:
    """The value exactly as the JSON column will give it back, so the stored row hashes the same."""
    return json.loads(json.dumps(value, default=str, sort_keys=True))


def _redact(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        key: "[redacted]" if any(marker in key.lower() for marker in SECRET_MARKERS) else value
        for key, value in values.items()
    }


def _normalise_ip(ip: str | None) -> str | None:
    if not ip:
        return None
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        return None


def event_fields(event: AuditEvent) -> dict[str, Any]:
    """Every recorded field as JSON values: what the hash covers, and what an export line carries."""
    return {
        "tenant": str(event.tenant_id),
        "seq": event.seq,
        "id": str(event.id),
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor_type": event.actor_type,
        "actor_id": event.actor_id,
        "actor_label": event.actor_label,
        "action": event.action,
        "target_type": event.target_type,
        "target_id": event.target_id,
        "changes": event.changes,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "prev_hash": event.prev_hash,
    }


def event_hash(event: AuditEvent) -> str:
    """SHA-256 over the canonical JSON (sorted keys, no spaces) of ``event_fields``."""
    payload = json.dumps(
        event_fields(event), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


PLATFORM = "platform"  # how the platform's own chain is named in reports
_PLATFORM_LOCK = 0x46414C43  # an advisory lock key ("FALC") for the platform chain's head


def _platform_lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_PLATFORM_LOCK])


def audit_record(
    *,
    tenant: Tenant | str | UUID | None,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: object,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the tenant's chain (``tenant=None``: the platform's own chain, for operator
    changes that belong to no tenant), inside the caller's transaction.

    The tenant row is locked (``FOR NO KEY UPDATE``, which does not block inserts referencing it) so
    concurrent writers in one tenant take turns at the chain head instead of forking it; the platform
    chain takes an advisory lock instead.
    """
    tenant_id = tenant.pk if isinstance(tenant, Tenant) else tenant
    # No savepoint inside the caller's transaction: an audit failure must undo the change anyway.
    with transaction.atomic(savepoint=False):
        if tenant_id is None:
            _platform_lock()
        else:
            tenant_lock(tenant_id)
        chain = (
            AuditEvent.objects.filter(tenant__isnull=True)
            if tenant_id is None
            else AuditEvent.objects.filter(tenant_id=tenant_id)
        )
        head = chain.order_by("-seq").values_list("seq", "hash").first()
        seq, prev_hash = (head[0] + 1, head[1]) if head else (1, GENESIS_HASH)
        changes: dict[str, Any] = {}
        if before is not None:
            changes["before"] = _redact(before)
        if after is not None:
            changes["after"] = _redact(after)
        event = AuditEvent(
            tenant_id=tenant_id,
            seq=seq,
            occurred_at=timezone.now(),
            actor_type=actor.type,
            actor_id=actor.id,
            actor_label=actor.label[:255],
            action=action,
            target_type=target_type,
            target_id=str(target_id),
            changes=_json_safe(changes),
            ip=_normalise_ip(actor.ip),
            user_agent=actor.user_agent[:512],
            request_id=actor.request_id[:128],
            prev_hash=prev_hash,
        )
        event.hash = event_hash(event)
        event.save(force_insert=True)
    return event


@dataclass(frozen=True)
class ChainBreak:
    tenant_slug: str
    seq: int
    event_id: str
    reason: str


def audit_verify_tenant(tenant: Tenant) -> ChainBreak | None:
    """The first broken link of the tenant's chain, or None when every row checks out."""
    return _verify_chain(tenant.pk, tenant.slug)


def audit_verify_platform() -> ChainBreak | None:
    """The first broken link of the platform's own chain (operator changes), or None."""
    return _verify_chain(None, PLATFORM)


def _verify_chain(tenant_id: Any, label: str) -> ChainBreak | None:
    expected_prev = GENESIS_HASH
    expected_seq = 1
    events: Iterator[AuditEvent] = (
        AuditEvent.objects.filter(**({"tenant_id": tenant_id} if tenant_id else {"tenant__isnull": True}))
        .order_by("seq")
        .iterator(chunk_size=2000)
    )
    for event in events:
        broken = None
        if event.seq != expected_seq:
            broken = f"sequence gap: expected #{expected_seq}, found #{event.seq} (a row was removed)"
        elif event.prev_hash != expected_prev:
            broken = "prev_hash does not match the previous row's hash"
        elif event_hash(event) != event.hash:
            broken = "contents do not match the row's hash (the row was altered)"
        if broken:
            return ChainBreak(label, event.seq, str(event.id), broken)
        expected_prev = event.hash
        expected_seq += 1
    return None


# --- what the audit coverage check reads ----------------------------------------------------------------

_audited_modules: list[str] = []


def audited_modules_register(*module_names: str) -> None:
    """Each app names the modules whose public functions change state; a test reads every one of them
    and fails on a state change that writes no audit event."""
    for name in module_names:
        if name not in _audited_modules:
            _audited_modules.append(name)


def audited_modules() -> list[str]:
    return list(_audited_modules)
