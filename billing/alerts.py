"""Telling people about the tenant's plan and usage: e-mail to owners and admins, usage alerts at 80/100 %."""

from __future__ import annotations

from typing import Any

from django.core.mail import send_mail
from django.db import transaction

from billing import registry
from falcon.celery import enqueue
from tenants.audit import Actor, audit_record
from tenants.models import Membership, Tenant
from tenants.permissions import Role

NOTIFY_TASK = "billing.tasks.billing_notify_task"


def notify_people(tenant_id: Any, subject: str, body: str) -> None:
    """E-mails the tenant's owners and admins once the transaction commits (through Celery)."""
    transaction.on_commit(lambda: enqueue(NOTIFY_TASK, str(tenant_id), subject, body))


def billing_notify(tenant_id: Any, subject: str, body: str) -> int:
    emails = list(
        Membership.objects.filter(tenant_id=tenant_id, role__in=[Role.OWNER, Role.ADMIN])
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )
    if not emails:
        return 0
    send_mail(f"[Falcon] {subject}", body, None, emails)
    return len(emails)


def usage_alert_record(*, tenant_id: Any, metric: str, scope: str, level: int, used: Any, limit: Any) -> None:
    """An 80 % / 100 % alert: an audit event now, an e-mail to owners and admins after commit."""
    what = metric if not scope else f"{metric} of agent {scope.split(':', 1)[1]}"
    audit_record(
        tenant=tenant_id,
        actor=Actor.system("billing:quota"),
        action="billing.usage_alert",
        target_type="usage",
        target_id=f"{metric}:{scope}" if scope else metric,
        after={"metric": metric, "scope": scope, "percent": level, "used": str(used), "limit": str(limit)},
    )
    tenant = Tenant.objects.only("name").get(pk=tenant_id)
    state = "reached" if level >= 100 else f"passed {level}% of"
    # Owners and admins get the e-mail below; listeners (the tenant's notification channels) are told.
    for listener in registry.usage_alert_listeners():
        listener(
            tenant_id=tenant_id,
            subject=f"{tenant.name} {state} its {what} limit",
            body=f"{used} of {limit} ({level}%) this period.",
            data={"metric": metric, "scope": scope, "percent": level, "used": str(used), "limit": str(limit)},
        )
    notify_people(
        tenant_id,
        f"{tenant.name} {state} its {what} limit",
        f"{tenant.name} has used {used} of its {limit} {what} limit this period ({level}%)."
        + (
            "\nFurther use is refused until the period renews or the limit is raised." if level >= 100 else ""
        ),
    )
