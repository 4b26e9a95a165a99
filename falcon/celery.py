"""The Celery application: configured from Django settings (``CELERY_*``), tasks found in each app.

Services enqueue by task name (``app.send_task``), so they never import the task modules that call them.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "falcon.settings")

app = Celery("falcon")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# The agents app keeps its tasks in its domain packages.
app.autodiscover_tasks(["agents.runs", "agents.triggers", "agents.notifications", "agents.generator"])
