"""Celery tasks of billing: Stripe events, notifications, and the periodic upkeep beat runs."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from billing import alerts, services
from billing.errors import BillingError


@shared_task(
    acks_late=True, autoretry_for=(BillingError,), retry_backoff=5, retry_backoff_max=600, max_retries=8
)
def stripe_event_process_task(event_pk: int) -> str:
    """Applies one stored Stripe event; Stripe being unreachable is retried with backoff."""
    return services.stripe_event_process(event_pk)


@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=10, max_retries=5)
def billing_notify_task(tenant_id: str, subject: str, body: str) -> int:
    return alerts.billing_notify(tenant_id, subject, body)


@shared_task(acks_late=True)
def grace_expire_task() -> int:
    return services.grace_expire()


@shared_task(acks_late=True)
def meter_report_task() -> dict[str, int]:
    return services.meter_report()


@shared_task(acks_late=True)
def retention_prune_task() -> dict[str, Any]:
    return services.retention_prune()
