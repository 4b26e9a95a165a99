"""Queues by kind of work: every task is routed in one place, and a worker of the runs queue executes
runs while notification deliveries wait in their own queue."""

from __future__ import annotations

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from django.conf import settings

from falcon import queues
from falcon.celery import app
from tests.agents.helpers import SANDBOX_ECHO, create_agent


def test_every_task_is_routed_to_one_of_the_queues():
    app.loader.import_default_modules()
    ours = {name for name in app.tasks if not name.startswith("celery.")}
    assert ours == set(queues.TASK_ROUTES), ours ^ set(queues.TASK_ROUTES)
    for task, route in queues.TASK_ROUTES.items():
        assert app.amqp.router.route({}, task)["queue"].name == route["queue"]
    assert app.amqp.router.route({}, "agents.tasks.run_execute_task")["queue"].name == "runs"
    assert (
        app.amqp.router.route({}, "agents.tasks.notification_deliver_task")["queue"].name == "notifications"
    )
    assert app.amqp.router.route({}, "agents.tasks.runs_sweep_task")["queue"].name == "maintenance"


@pytest.mark.django_db(transaction=True)
def test_a_runs_worker_is_not_held_up_by_waiting_notifications(world, alice_client):
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    app.control.purge()
    # A notification delivery waits in its queue (no notifications worker is running).
    app.send_task("agents.tasks.notification_deliver_task", args=["00000000-0000-0000-0000-000000000000"])
    assert broker.llen("notifications") == 1
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    try:
        with start_worker(
            app, pool="threads", concurrency=2, perform_ping_check=False, queues=["runs"], loglevel="INFO"
        ):
            from tests import logscan

            logscan.attach()
            run = alice_client.post(
                f"/api/v1/agents/{agent_id}/runs", {"input": {"name": "Ada"}, "wait_s": 30}, format="json"
            ).json()
            assert run["status"] == "succeeded", run
    finally:
        # -Q narrows the app's own queue selection: later workers of this process consume every queue.
        app.amqp.queues._consume_from = None
    assert broker.llen("notifications") == 1  # still there: the runs worker never took it
    assert broker.llen("runs") == 0
    app.control.purge()


@pytest.mark.django_db(transaction=True)
def test_a_queued_run_is_published_without_a_result_subscription(world, alice_client):
    """Nobody awaits a task's result: the message says so (without it, the publishing process
    subscribes to the result's channel on the result backend at every publish)."""
    import json

    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    app.control.purge()
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    response = alice_client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {"name": "Ada"}}, format="json")
    assert response.status_code == 202, response.content
    messages = [json.loads(raw) for raw in broker.lrange("runs", 0, -1)]
    assert [m["headers"]["task"] for m in messages] == ["agents.tasks.run_execute_task"]
    assert messages[0]["headers"]["argsrepr"] == repr((response.json()["id"],))
    assert messages[0]["headers"]["ignore_result"] is True
    app.control.purge()
