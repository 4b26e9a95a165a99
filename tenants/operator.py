"""Operator changes to people (platform staff, in the console): on the platform's audit chain, and a
deactivation or reactivation also in each tenant the person belongs to (its owners see it)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from tenants.audit import Actor, audit_record
from tenants.models import Membership, User


def user_snapshot(user: User) -> dict[str, Any]:
    """What an operator may change on a person (never the password, only that it was set)."""
    return {
        "email": user.email,
        "name": getattr(user, "name", ""),
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "groups": sorted(user.groups.values_list("name", flat=True)) if user.pk else [],
    }


@transaction.atomic
def user_operator_change(
    *, user: User, before: dict[str, Any] | None, actor: Actor, password_set: bool = False
) -> None:
    after = user_snapshot(user)
    if password_set:
        after["password_set"] = True
    changed = {k: v for k, v in after.items() if before is None or before.get(k) != v}
    if not changed:
        return
    audit_record(
        tenant=None,
        actor=actor,
        action="user.created" if before is None else "user.changed",
        target_type="user",
        target_id=user.pk,
        before={k: before[k] for k in changed if k in before} if before else None,
        after=changed,
    )
    if before is not None and "is_active" in changed:
        action = "member.reactivated" if user.is_active else "member.deactivated"
        for tenant_id in Membership.objects.filter(user=user).values_list("tenant_id", flat=True):
            audit_record(
                tenant=tenant_id,
                actor=actor,
                action=action,
                target_type="user",
                target_id=user.pk,
                before={"is_active": before["is_active"]},
                after={"is_active": user.is_active, "email": user.email, "by": "platform staff"},
            )
