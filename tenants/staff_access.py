"""Break-glass: platform staff looking at a tenant's data, on the record and visible to the tenant.

Opening a tenant's run, step payloads, agent version or prompt version in the compliance console
needs membership of the **Compliance** group and a reason (a ticket id or a sentence). Each grant is
kept (``StaffAccess``, valid ``ACCESS_MINUTES`` for that object and that person) and written as a
``staff.access`` event into the tenant's own audit chain (who, which object, the reason), which the
tenant's owners and auditors see in their audit log, API and dashboard; the apps above register
listeners (agents sends the ``staff.access`` notification). Staff outside the group see no tenant
payload at all.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from falcon.errors import InvalidInput
from tenants.audit import Actor, audit_record
from tenants.models import AuditEvent, StaffAccess, User

COMPLIANCE_GROUP = "Compliance"
# What the group may view in the console, by app label (view permissions only).
CONSOLE_MODELS = {
    "tenants": ["tenant", "membership", "invitation", "apikey", "auditevent", "staffaccess"],
    "agents": [
        "agent",
        "agentversion",
        "run",
        "steprun",
        "prompt",
        "promptversion",
        "promptlabel",
        "promptlabelmove",
        "trigger",
        "triggerevent",
        "notificationchannel",
        "notification",
        "notificationdelivery",
        "variable",
    ],
    "connectors": ["connector", "tenantkey"],
    "billing": ["subscription", "usagecounter", "meterreport", "stripeevent"],
}
ACCESS_MINUTES = 30
MIN_REASON_CHARS = 4

_listeners: list[Callable[[StaffAccess], None]] = []


def staff_access_listener_register(listener: Callable[[StaffAccess], None]) -> None:
    """``listener(grant)`` runs after a grant commits (e.g. to notify the tenant's owners)."""
    if listener not in _listeners:
        _listeners.append(listener)


def is_compliance(user: Any) -> bool:
    """Active staff in the Compliance group: the only people who may open tenant payloads."""
    return bool(
        getattr(user, "is_active", False)
        and getattr(user, "is_staff", False)
        and user.groups.filter(name=COMPLIANCE_GROUP).exists()
    )


def staff_actor(request: Any, user: User) -> Actor:
    return Actor(
        type=AuditEvent.ActorType.USER,
        id=str(user.pk),
        label=f"{user.email} (platform staff)",
        ip=request.META.get("REMOTE_ADDR"),
        user_agent=request.META.get("HTTP_USER_AGENT", ""),
        request_id=getattr(request, "request_id", ""),
    )


def staff_access_active(user: Any, object_type: str, object_id: Any) -> StaffAccess | None:
    if not is_compliance(user):
        return None
    return (
        StaffAccess.objects.filter(
            user=user, object_type=object_type, object_id=str(object_id), expires_at__gt=timezone.now()
        )
        .order_by("-expires_at")
        .first()
    )


def staff_access_grant(
    *, request: Any, tenant_id: Any, object_type: str, object_id: Any, reason: str
) -> StaffAccess:
    """Records the access (and its audit event in the tenant's chain); refuses without the group or a
    reason."""
    user = request.user
    if not is_compliance(user):
        raise InvalidInput("Only members of the Compliance group may open a tenant's data.", field="reason")
    reason = " ".join(str(reason or "").split())[:500]
    if len(reason) < MIN_REASON_CHARS:
        raise InvalidInput("Say why you open it: a ticket id or a sentence.", field="reason")
    now = timezone.now()
    with transaction.atomic():
        grant = StaffAccess.objects.create(
            tenant_id=tenant_id,
            user=user,
            object_type=object_type,
            object_id=str(object_id),
            reason=reason,
            granted_at=now,
            expires_at=now + timedelta(minutes=ACCESS_MINUTES),
        )
        audit_record(
            tenant=tenant_id,
            actor=staff_actor(request, user),
            action="staff.access",
            target_type=object_type,
            target_id=object_id,
            after={"reason": reason, "staff": user.email, "until": grant.expires_at.isoformat()},
        )
        for listener in _listeners:
            transaction.on_commit(lambda listener=listener: listener(grant))  # type: ignore[misc]
    return grant


def compliance_group_ensure(**_: Any) -> None:
    """The Compliance group with its view permissions (after every migrate, and after a flush)."""
    from django.contrib.auth.models import Group, Permission

    group, _created = Group.objects.get_or_create(name=COMPLIANCE_GROUP)
    for label, models in CONSOLE_MODELS.items():
        group.permissions.add(
            *Permission.objects.filter(
                content_type__app_label=label, codename__in=[f"view_{model}" for model in models]
            )
        )
