"""Which queue each kind of work goes to: the one place Celery routing is decided.

- ``runs``: executing runs and generations, firing schedules. Latency-sensitive: give it most workers.
- ``notifications``: e-mail, Slack and webhook deliveries to people and channels. A slow channel
  retries here without delaying any run.
- ``maintenance``: the run sweeper and due waits, billing grace periods and meters, retention, the
  nightly audit verification, Stripe events.

A worker started without ``-Q`` consumes all three (``make run``, the tests); production starts one
pool per queue (README, docs/deploy.md).
"""

from __future__ import annotations

from kombu import Queue

RUNS = "runs"
NOTIFICATIONS = "notifications"
MAINTENANCE = "maintenance"

ROUTES: dict[str, tuple[str, ...]] = {
    RUNS: (
        "agents.tasks.run_execute_task",
        "agents.tasks.generation_execute_task",
        "agents.tasks.trigger_fire_task",
    ),
    NOTIFICATIONS: (
        "agents.tasks.notification_deliver_task",
        "agents.tasks.notification_digest_task",
        "billing.tasks.billing_notify_task",
    ),
    MAINTENANCE: (
        "agents.tasks.runs_sweep_task",
        "agents.tasks.runs_resume_due_task",
        "billing.tasks.grace_expire_task",
        "billing.tasks.meter_report_task",
        "billing.tasks.retention_prune_task",
        "billing.tasks.stripe_event_process_task",
        "tenants.tasks.audit_verify_all_task",
    ),
}

TASK_QUEUES = tuple(Queue(name, routing_key=name) for name in ROUTES)
TASK_ROUTES = {task: {"queue": queue} for queue, tasks in ROUTES.items() for task in tasks}
