"""Celery tasks of the run lifecycle: they take ids, re-fetch, and return quietly when there is nothing to do.

Task names are fixed (``agents.tasks.*``): queued messages and beat entries name them.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from agents.runs import execution, services


@shared_task(name="agents.tasks.run_execute_task", acks_late=True)
def run_execute_task(run_id: str) -> str | None:
    """Executes one run; a duplicate delivery finds nothing to claim and returns None."""
    return execution.run_execute(run_id)


@shared_task(name="agents.tasks.runs_sweep_task", acks_late=True)
def runs_sweep_task() -> dict[str, Any]:
    return services.runs_sweep()


@shared_task(name="agents.tasks.runs_resume_due_task", acks_late=True)
def runs_resume_due_task() -> int:
    return services.runs_resume_due()
