"""Celery tasks of triggers (the task name is fixed: django-celery-beat rows name it)."""

from __future__ import annotations

from celery import shared_task

from agents.triggers.services import SCHEDULE_TASK, trigger_fire_scheduled


@shared_task(name=SCHEDULE_TASK, acks_late=True)
def trigger_fire_task(trigger_id: str) -> str:
    """Fired by django-celery-beat for schedule triggers."""
    return trigger_fire_scheduled(trigger_id)
