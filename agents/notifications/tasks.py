"""Celery tasks of notifications (names fixed: queued messages name them)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from agents.notifications.services import (
    DELIVER_TASK,
    DIGEST_TASK,
    DeliveryFailed,
    notification_deliver,
    notification_digest,
)


@shared_task(name=DELIVER_TASK, bind=True, acks_late=True, max_retries=5)
def notification_deliver_task(self: Any, delivery_id: str) -> str:
    """Sends one notification delivery; a failing channel is retried with backoff, then marked failed."""
    final = self.request.retries >= self.max_retries
    try:
        return notification_deliver(delivery_id, final=final)
    except DeliveryFailed as exc:
        if final:
            return f"failed: {exc}"
        raise self.retry(exc=exc, countdown=min(300, 5 * 2**self.request.retries)) from exc


@shared_task(name=DIGEST_TASK, acks_late=True)
def notification_digest_task(notification_id: str) -> str:
    return "sent" if notification_digest(notification_id) else "nothing more"
