"""The Celery application: configured from Django settings (``CELERY_*``), tasks found in each app.

Services enqueue by task name (``enqueue``), so they never import the task modules that call them.
"""

import os
from typing import Any

from celery import Celery, signals

from falcon import logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "falcon.settings")

app = Celery("falcon")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The agents app keeps its tasks in its domain packages.
app.autodiscover_tasks(["agents.runs", "agents.triggers", "agents.notifications", "agents.generator"])


def enqueue(name: str, *args: Any, **options: Any) -> None:
    """Publishes the task ``name`` (by name: the caller never imports the task's module).

    Nobody waits on a task's result here (outcomes are in the database), so the message says so:
    without ``ignore_result`` Celery subscribes to the result's channel on the result backend at every
    publish, under a lock every thread of the process shares, and unsubscribes when the result object
    is collected: two Redis round trips per message for nothing.
    """
    app.send_task(name, args=args, ignore_result=True, **options)


@signals.task_prerun.connect
def _bind_task_context(task_id: str, task: Any, **kwargs: Any) -> None:
    """Each task logs with its own context (name and id); nothing carries over from the previous one."""
    logs.fresh()
    logs.bind(task=task.name, task_id=task_id)


@signals.task_postrun.connect
def _clear_task_context(**kwargs: Any) -> None:
    logs.fresh()


@signals.worker_ready.connect
@signals.beat_init.connect
def _serve_metrics(**kwargs: Any) -> None:
    from falcon.metrics import serve_worker_metrics

    serve_worker_metrics()


@signals.worker_init.connect
@signals.worker_process_init.connect
def _trace_worker(**kwargs: Any) -> None:
    from falcon import tracing

    tracing.configure("worker")


@signals.beat_init.connect
def _trace_beat(**kwargs: Any) -> None:
    from falcon import tracing

    tracing.configure("beat")
