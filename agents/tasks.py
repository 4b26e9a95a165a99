"""Celery tasks of the engine: they take ids, re-fetch, and return quietly when there is nothing to do."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from agents import execution


@shared_task(acks_late=True)
def run_execute_task(run_id: str) -> str | None:
    """Executes one run; a duplicate delivery finds nothing to claim and returns None."""
    return execution.run_execute(run_id)


@shared_task(acks_late=True)
def runs_sweep_task() -> dict[str, Any]:
    return execution.runs_sweep()


@shared_task(acks_late=True)
def runs_resume_due_task() -> int:
    return execution.runs_resume_due()


@shared_task(acks_late=True)
def trigger_fire_task(trigger_id: str) -> str:
    """Fired by django-celery-beat for schedule triggers."""
    from agents.services.triggers import trigger_fire_scheduled

    return trigger_fire_scheduled(trigger_id)


@shared_task(bind=True, acks_late=True, max_retries=5)
def notification_deliver_task(self: Any, delivery_id: str) -> str:
    """Sends one notification delivery; a failing channel is retried with backoff, then marked failed."""
    from agents.services.notifications import DeliveryFailed, notification_deliver

    final = self.request.retries >= self.max_retries
    try:
        return notification_deliver(delivery_id, final=final)
    except DeliveryFailed as exc:
        if final:
            return f"failed: {exc}"
        raise self.retry(exc=exc, countdown=min(300, 5 * 2**self.request.retries)) from exc


@shared_task(acks_late=True)
def notification_digest_task(notification_id: str) -> str:
    from agents.services.notifications import notification_digest

    return "sent" if notification_digest(notification_id) else "nothing more"
