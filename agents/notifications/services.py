"""Who is told what: agent watchers, tenant channels (e-mail, Slack connector, signed webhook), and
one delivery record per recipient or channel, sent by Celery with retries.

Events: ``run.failed``, ``run.timed_out``, ``quota.alert``, ``trigger.disabled``, ``prompt.submitted``,
``prompt.reviewed``. Failures of one agent within ``FALCON_NOTIFY_COLLAPSE_S`` collapse: the first is
sent at once, later ones only raise its count, and when the window closes one follow-up says how
many more failed, with links to their runs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from agents.errors import DeliveryFailed
from agents.notifications.models import Notification, NotificationChannel, NotificationDelivery
from connectors.crypto import secret_decrypt, secret_encrypt
from connectors.kinds import KINDS
from connectors.kinds.http import guarded_request
from connectors.models import Connector
from connectors.services import connector_find, connector_resolve, network_policy
from falcon import metrics, signing
from falcon.celery import enqueue
from falcon.errors import Conflict, InvalidInput
from falcon.redaction import public_error
from tenants.audit import Actor, audit_record
from tenants.models import Membership, Tenant

EVENTS = (
    "run.failed",
    "run.timed_out",
    "quota.alert",
    "trigger.disabled",
    "prompt.submitted",
    "prompt.reviewed",
    "staff.access",
)
COLLAPSING = frozenset({"run.failed", "run.timed_out"})
DELIVER_TASK = "agents.tasks.notification_deliver_task"
DIGEST_TASK = "agents.tasks.notification_digest_task"


def run_link(run_id: Any) -> str:
    return f"{settings.FALCON_BASE_URL}/api/v1/runs/{run_id}"


# --- configuration (audited) -------------------------------------------------------------------------------


def _channel_config(tenant: Tenant, kind: str, config: dict[str, Any]) -> dict[str, Any]:
    if kind == NotificationChannel.Kind.EMAIL:
        to = config.get("to")
        if not isinstance(to, list) or not to or not all(isinstance(a, str) and "@" in a for a in to):
            raise InvalidInput("config.to is a list of e-mail addresses.", field="config.to")
        return {"to": to}
    if kind == NotificationChannel.Kind.SLACK:
        name = config.get("connector")
        if not Connector.objects.filter(tenant=tenant, name=name, kind="slack_webhook").exists():
            raise InvalidInput("config.connector names a slack_webhook connector.", field="config.connector")
        return {"connector": name}
    url = config.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise InvalidInput("config.url is the http(s) URL to POST to.", field="config.url")
    return {"url": url}


@transaction.atomic
def channel_create(
    *, tenant: Tenant, name: str, kind: str, config: dict[str, Any], events: list[str], actor: Actor
) -> tuple[NotificationChannel, str | None]:
    """A channel; a webhook channel's signing secret (``whsec_``) is returned once."""
    if kind not in NotificationChannel.Kind.values:
        raise InvalidInput(f"kind is one of {', '.join(NotificationChannel.Kind.values)}.", field="kind")
    if unknown := sorted(set(events) - set(EVENTS)):
        raise InvalidInput(f"Unknown events: {', '.join(unknown)}; use {', '.join(EVENTS)}.", field="events")
    channel = NotificationChannel(
        tenant=tenant,
        name=name.strip(),
        kind=kind,
        config=_channel_config(tenant, kind, config),
        events=events,
    )
    plaintext = None
    if kind == NotificationChannel.Kind.WEBHOOK:
        plaintext = signing.whsec_new()
        channel.secret = secret_encrypt(
            tenant_id=tenant.pk, connector_id=channel.pk, field="notify-signing", plaintext=plaintext
        )
    try:
        with transaction.atomic():
            channel.save(force_insert=True)
    except IntegrityError as exc:
        raise Conflict(f"A channel named {name!r} exists.", code="name_taken", field="name") from exc
    audit_record(
        tenant=tenant,
        actor=actor,
        action="notification_channel.created",
        target_type="notification_channel",
        target_id=channel.pk,
        after={"name": channel.name, "kind": kind, "config": channel.config, "events": events},
    )
    return channel, plaintext


@transaction.atomic
def channel_delete(*, channel: NotificationChannel, actor: Actor) -> None:
    audit_record(
        tenant=channel.tenant_id,
        actor=actor,
        action="notification_channel.deleted",
        target_type="notification_channel",
        target_id=channel.pk,
        before={"name": channel.name, "kind": channel.kind},
    )
    channel.delete()


# --- raising notifications -------------------------------------------------------------------------------


def notify(
    *,
    tenant_id: Any,
    event: str,
    subject: str,
    body: str,
    recipients: list[str],
    agent_id: Any = None,
    run_id: Any = None,
    data: dict[str, Any] | None = None,
) -> Notification | None:
    """Records a notification and its deliveries (sent after commit), or folds it into an open window."""
    now = timezone.now()
    window = settings.FALCON_NOTIFY_COLLAPSE_S
    with transaction.atomic():
        if event in COLLAPSING and agent_id is not None and window:
            open_one = (
                Notification.objects.select_for_update()
                .filter(tenant_id=tenant_id, event=event, agent_id=agent_id, window_until__gt=now)
                .order_by("-created_at")
                .first()
            )
            if open_one is not None:
                open_one.count += 1
                if run_id is not None:
                    open_one.runs = [*open_one.runs, str(run_id)][-50:]
                open_one.save(update_fields=["count", "runs"])
                return None
        notification = Notification.objects.create(
            tenant_id=tenant_id,
            event=event,
            agent_id=agent_id,
            subject=subject[:300],
            body=body,
            data=data or {},
            runs=[str(run_id)] if run_id is not None else [],
            window_until=now + timedelta(seconds=window) if event in COLLAPSING and window else None,
        )
        deliveries = [
            NotificationDelivery(tenant_id=tenant_id, notification=notification, recipient=address)
            for address in dict.fromkeys(recipients)
        ]
        for channel in NotificationChannel.objects.filter(tenant_id=tenant_id, enabled=True):
            if not channel.events or event in channel.events:
                deliveries.append(
                    NotificationDelivery(tenant_id=tenant_id, notification=notification, channel=channel)
                )
        NotificationDelivery.objects.bulk_create(deliveries)
        ids = [str(d.pk) for d in deliveries]
        for delivery_id in ids:
            transaction.on_commit(partial(enqueue, DELIVER_TASK, delivery_id))
        if notification.window_until is not None:
            transaction.on_commit(lambda: enqueue(DIGEST_TASK, str(notification.pk), countdown=window))
    return notification


def notification_digest(notification_id: Any) -> Notification | None:
    """At the end of a collapse window: one follow-up when more of the same event came in."""
    original = Notification.objects.select_related("agent").filter(pk=notification_id).first()
    if original is None or original.count <= 1:
        return None
    more = original.count - 1
    runs = "\n".join(run_link(r) for r in original.runs[1:])
    name = original.agent.name if original.agent else "an agent"
    return notify(
        tenant_id=original.tenant_id,
        event=f"{original.event}",
        subject=f"{more} more {original.event.replace('run.', 'run ').replace('_', ' ')} of {name}",
        body=f"{more} more runs of {name} ended {original.event.split('.', 1)[1]} in the last "
        f"{settings.FALCON_NOTIFY_COLLAPSE_S // 60} minutes:\n{runs}",
        recipients=[d.recipient for d in original.deliveries.exclude(recipient="")],
        agent_id=None,  # a digest never collapses into a new window
        data={"collapsed": more, "runs": original.runs[1:], "agent": str(original.agent_id)},
    )


def people_with(tenant_id: Any, roles: tuple[str, ...]) -> list[str]:
    return list(
        Membership.objects.filter(tenant_id=tenant_id, role__in=roles)
        .order_by("user__email")
        .values_list("user__email", flat=True)
    )


# --- delivering ------------------------------------------------------------------------------------------


def _signed_post(channel: NotificationChannel, payload: dict[str, Any]) -> None:
    secret = secret_decrypt(
        tenant_id=channel.tenant_id, connector_id=channel.pk, field="notify-signing", token=channel.secret
    )
    body = json.dumps(payload).encode()
    status, _, _ = guarded_request(
        "POST",
        channel.config["url"],
        policy=network_policy(channel.tenant_id),
        content=body,
        headers={
            "Content-Type": "application/json",
            **signing.standard_headers(secret, f"msg_{payload['id']}", body),
        },
        timeout_s=15,
    )
    if status >= 300:
        raise DeliveryFailed(f"the webhook answered {status}")


def notification_deliver(delivery_id: Any, *, final: bool = False) -> str:
    """Sends one delivery; records the attempt and its outcome. Raises DeliveryFailed to be retried."""
    delivery = (
        NotificationDelivery.objects.select_related("notification", "channel").filter(pk=delivery_id).first()
    )
    if delivery is None or delivery.status == NotificationDelivery.Status.SENT:
        return "nothing to do"
    NotificationDelivery.objects.filter(pk=delivery.pk).update(attempts=delivery.attempts + 1)
    note, channel = delivery.notification, delivery.channel
    try:
        if channel is None:
            send_mail(f"[Falcon] {note.subject}", note.body, None, [delivery.recipient])
        elif channel.kind == NotificationChannel.Kind.EMAIL:
            send_mail(f"[Falcon] {note.subject}", note.body, None, channel.config["to"])
        elif channel.kind == NotificationChannel.Kind.SLACK:
            connector = connector_find(tenant_id=channel.tenant_id, name=channel.config["connector"])
            if connector is None:
                raise DeliveryFailed(f"no connector named {channel.config['connector']!r}")
            KINDS[connector.kind].call(
                connector_resolve(connector), "send", {"text": f"*{note.subject}*\n{note.body}"}
            )
        else:
            payload = {
                "id": str(note.pk),
                "event": note.event,
                "subject": note.subject,
                "body": note.body,
                "count": note.count,
                "data": note.data,
                "created_at": note.created_at.isoformat(),
            }
            _signed_post(channel, payload)
    except Exception as exc:
        kind = channel.kind if channel is not None else "member_email"
        metrics.NOTIFICATION_DELIVERIES.labels(kind, "failed" if final else "retrying").inc()
        message = public_error(getattr(exc, "message", None) or exc)
        NotificationDelivery.objects.filter(pk=delivery.pk).update(
            error=message,
            status=NotificationDelivery.Status.FAILED if final else NotificationDelivery.Status.PENDING,
        )
        raise DeliveryFailed(message) from exc
    NotificationDelivery.objects.filter(pk=delivery.pk).update(
        status=NotificationDelivery.Status.SENT, sent_at=timezone.now(), error=""
    )
    metrics.NOTIFICATION_DELIVERIES.labels(
        channel.kind if channel is not None else "member_email", "sent"
    ).inc()
    return "sent"


# --- what lower apps act on (registered in AgentsConfig.ready) --------------------------------------------


def channel_secrets_rekey(tenant_id: Any, reseal: Callable[[Any, str, str], str]) -> int:
    """Re-encrypts the signing secret of every webhook channel of a tenant (data key rotation)."""
    count = 0
    for channel in (
        NotificationChannel.objects.select_for_update().filter(tenant_id=tenant_id).exclude(secret="")
    ):
        channel.secret = reseal(channel.pk, "notify-signing", channel.secret)
        channel.save(update_fields=["secret"])
        count += 1
    return count


def usage_alert_notify(*, tenant_id: Any, subject: str, body: str, data: dict[str, Any]) -> None:
    """Billing's usage alerts reach the tenant's channels (owners and admins get billing's e-mail)."""
    notify(tenant_id=tenant_id, event="quota.alert", subject=subject, body=body, recipients=[], data=data)


def staff_access_notify(grant: Any) -> None:
    """Platform staff opened some of the tenant's data in the console: its owners and auditors are told
    (and its channels that take ``staff.access``), with the reason given."""
    from tenants.permissions import Role

    what = grant.object_type.replace("_", " ")
    notify(
        tenant_id=grant.tenant_id,
        event="staff.access",
        subject=f"Platform staff opened a {what} of your organization",
        body=(
            f"{grant.user.email} (platform staff) opened the {what} {grant.object_id} on "
            f"{grant.granted_at:%Y-%m-%d %H:%M} UTC, until {grant.expires_at:%H:%M} UTC.\n"
            f"Reason given: {grant.reason}\nThis access is in your audit log (action staff.access)."
        ),
        recipients=people_with(grant.tenant_id, (Role.OWNER, Role.AUDITOR)),
        data={
            "object_type": grant.object_type,
            "object_id": grant.object_id,
            "staff": grant.user.email,
            "reason": grant.reason,
        },
    )
