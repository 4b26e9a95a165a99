"""Evidence bundles: what a regulator asks for about one tenant and one period, in one verifiable file.

A bundle is a ZIP of JSON files plus ``manifest.json`` (the SHA-256 of every other file):

- ``audit_events.jsonl`` — the tenant's audit events of the period, every recorded field (what the
  hash covers), and ``chain.json`` — the verification of the tenant's whole chain when the bundle was
  made (and the head hash at that moment, to compare with the live system later);
- ``agent_versions.json`` — every agent version that was live (published) at some time in the period,
  with its definition and when it went live and stopped being live;
- ``prompt_versions.json`` — every prompt version a label pointed at during the period, with its
  template, review decision and the label moves;
- ``runs.json`` — runs of the period counted by agent and status, and the failures with their errors;
- ``staff_access.json`` — every time platform staff opened the tenant's data in the period.

``agents/compliance/verify.py`` needs nothing but the file: it checks every file against the
manifest, and every audit event against its own hash and its predecessor's (so an edited event, a
removed one or an edited file is found), using only the standard library.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from typing import Any

from django.db.models import Count, Q

from agents.compliance.verify import FORMAT
from agents.prompts.models import PromptLabelMove, PromptVersion
from agents.runs.models import Run
from agents.workflows.models import Agent, AgentVersion
from tenants.audit import audit_verify_tenant, event_fields
from tenants.models import AuditEvent, StaffAccess, Tenant

FORMAT_VERSION = 1
MAX_FAILURES = 1000


def _json(value: Any) -> bytes:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str).encode()


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _published_timeline(tenant: Tenant, until: datetime) -> dict[str, list[tuple[datetime, int]]]:
    """Per agent id: (when, version number) each time a version was published, from the audit log."""
    timeline: dict[str, list[tuple[datetime, int]]] = {}
    events = AuditEvent.objects.filter(
        tenant=tenant, action__in=("agent.published", "agent.rolled_back"), occurred_at__lt=until
    ).order_by("seq")
    for event in events:
        number = (event.changes.get("after") or {}).get("published_version")
        if isinstance(number, int):
            timeline.setdefault(event.target_id, []).append((event.occurred_at, number))
    return timeline


def _live_versions(tenant: Tenant, since: datetime, until: datetime) -> list[dict[str, Any]]:
    out = []
    for agent_id, moves in _published_timeline(tenant, until).items():
        agent = Agent.objects.filter(tenant=tenant, pk=agent_id).first()
        if agent is None:
            continue
        for index, (started, number) in enumerate(moves):
            ended = moves[index + 1][0] if index + 1 < len(moves) else None
            if (ended is not None and ended <= since) or started >= until:
                continue
            version = AgentVersion.objects.filter(agent=agent, number=number).first()
            if version is None:
                continue
            out.append(
                {
                    "agent": {"id": str(agent.pk), "name": agent.name},
                    "version": number,
                    "live_from": _iso(started),
                    "live_until": _iso(ended),
                    "note": version.note,
                    "created_at": _iso(version.created_at),
                    "definition": version.definition,
                }
            )
    return out


def _prompt_versions(tenant: Tenant, since: datetime, until: datetime) -> list[dict[str, Any]]:
    moves = list(
        PromptLabelMove.objects.filter(tenant=tenant, moved_at__lt=until)
        .select_related("prompt")
        .order_by("moved_at")
    )
    by_label: dict[tuple[str, str], list[PromptLabelMove]] = {}
    for move in moves:
        by_label.setdefault((str(move.prompt_id), move.label), []).append(move)
    live: dict[tuple[str, int], dict[str, Any]] = {}
    for (_prompt_id, label), history in by_label.items():
        for index, move in enumerate(history):
            ended = history[index + 1].moved_at if index + 1 < len(history) else None
            if ended is not None and ended <= since:
                continue
            key = (str(move.prompt_id), move.to_number)
            entry = live.setdefault(
                key, {"prompt": move.prompt.name, "version": move.to_number, "labels": []}
            )
            entry["labels"].append(
                {"label": label, "from": _iso(move.moved_at), "until": _iso(ended), "moved_by": move.moved_by}
            )
    out = []
    for (prompt_id, number), entry in sorted(live.items(), key=lambda item: (item[1]["prompt"], item[0][1])):
        version = (
            PromptVersion.objects.filter(prompt_id=prompt_id, number=number)
            .select_related("reviewed_by")
            .first()
        )
        if version is None:
            continue
        out.append(
            {
                **entry,
                "template": version.template,
                "system": version.system,
                "status": version.status,
                "author": version.author_label,
                "reviewed_by": version.reviewed_by.email if version.reviewed_by else None,
                "reviewed_at": _iso(version.reviewed_at),
                "review_comment": version.review_comment,
            }
        )
    return out


def _runs(tenant: Tenant, since: datetime, until: datetime) -> dict[str, Any]:
    runs = Run.objects.filter(tenant=tenant, created_at__gte=since, created_at__lt=until)
    counts = [
        {"agent": row["agent__name"], "status": row["status"], "runs": row["n"]}
        for row in runs.values("agent__name", "status")
        .annotate(n=Count("id"))
        .order_by("agent__name", "status")
    ]
    failed = runs.filter(Q(status__in=(Run.Status.FAILED, Run.Status.TIMED_OUT))).select_related("agent")
    failures = [
        {
            "run": str(run.pk),
            "agent": run.agent.name,
            "status": run.status,
            "created_at": _iso(run.created_at),
            "error": run.error,
        }
        for run in failed.order_by("created_at")[:MAX_FAILURES]
    ]
    return {"counts": counts, "failures": failures, "failures_listed_at_most": MAX_FAILURES}


def bundle_build(tenant: Tenant, since: datetime, until: datetime) -> bytes:
    """The evidence bundle of ``tenant`` for [since, until) as ZIP bytes."""
    events = AuditEvent.objects.filter(tenant=tenant, occurred_at__gte=since, occurred_at__lt=until).order_by(
        "seq"
    )
    lines = [
        json.dumps({**event_fields(e), "hash": e.hash}, sort_keys=True, ensure_ascii=False) for e in events
    ]
    broken = audit_verify_tenant(tenant)
    head = AuditEvent.objects.filter(tenant=tenant).order_by("-seq").values_list("seq", "hash").first()
    files = {
        "audit_events.jsonl": ("\n".join(lines) + ("\n" if lines else "")).encode(),
        "chain.json": _json(
            {
                "verified_at": _iso(datetime.now(UTC)),
                "ok": broken is None,
                "first_break": None
                if broken is None
                else {"seq": broken.seq, "event": broken.event_id, "reason": broken.reason},
                "head": {"seq": head[0], "hash": head[1]} if head else None,
                "events_in_period": len(lines),
            }
        ),
        "agent_versions.json": _json(_live_versions(tenant, since, until)),
        "prompt_versions.json": _json(_prompt_versions(tenant, since, until)),
        "runs.json": _json(_runs(tenant, since, until)),
        "staff_access.json": _json(
            [
                {
                    "staff": access.user.email,
                    "object_type": access.object_type,
                    "object_id": access.object_id,
                    "reason": access.reason,
                    "granted_at": _iso(access.granted_at),
                    "expires_at": _iso(access.expires_at),
                }
                for access in StaffAccess.objects.filter(
                    tenant=tenant, granted_at__gte=since, granted_at__lt=until
                )
                .select_related("user")
                .order_by("granted_at")
            ]
        ),
    }
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tenant": {"id": str(tenant.pk), "slug": tenant.slug, "name": tenant.name},
        "since": _iso(since),
        "until": _iso(until),
        "generated_at": _iso(datetime.now(UTC)),
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in files.items()},
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("manifest.json", _json(manifest))
    return buffer.getvalue()
