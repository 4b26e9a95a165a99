"""The Agent Generator's Celery task (its name is fixed: queued messages name it)."""

from __future__ import annotations

from celery import shared_task

from agents.generator import services


@shared_task(name="agents.tasks.generation_execute_task", acks_late=True)
def generation_execute_task(generation_id: str) -> str:
    return services.generation_execute(generation_id)
