"""A worker process is killed mid-run: the sweeper re-queues the run, another worker finishes it, and no
step that had succeeded is executed again."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from agents.models import Run, StepRun
from agents.runs.services import runs_sweep
from tests import processes
from tests.agents.helpers import create_agent
from tests.agents.test_runs import wait_for
from tests.servers.llm import Reply

pytestmark = pytest.mark.django_db(transaction=True)


def _worker(llm) -> subprocess.Popen[bytes]:
    """A real `celery worker` process on the test database, pointed at the loopback provider."""
    env = processes.environment(**llm.provider_env(), FALCON_RUN_HEARTBEAT_INTERVAL_S="1")
    return processes.spawn(processes.CELERY_WORKER, env)


def test_killed_worker_run_is_finished_by_another_without_repeating_succeeded_steps(
    world, alice_client, llm, settings
):
    from falcon.celery import app

    app.control.purge()
    settings.FALCON_RUN_HEARTBEAT_TIMEOUT_S = 2
    definition = {
        "steps": [
            {"id": "first", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "first call"},
            {"id": "second", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "second call"},
            {
                "id": "third",
                "type": "transform",
                "value": "{{ steps.first.output }} / {{ steps.second.output }}",
            },
        ]
    }
    agent_id = create_agent(alice_client, definition)
    llm.enqueue(Reply(text="one"), Reply(text="never delivered", delay_s=15), Reply(text="two"))

    doomed = _worker(llm)
    try:
        response = alice_client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {}}, format="json")
        run_id = response.json()["id"]
        # The first step succeeded and the second call is in flight at the provider: kill the worker.
        wait_for(lambda: len(llm.received) == 2, timeout=60, what="the second provider call")
        assert StepRun.objects.filter(run_id=run_id, step_id="first", status="succeeded").count() == 1
        os.kill(doomed.pid, signal.SIGKILL)
        doomed.wait(timeout=30)
    finally:
        if doomed.poll() is None:
            doomed.kill()
    assert Run.objects.get(pk=run_id).status == "running"  # what a dead worker leaves behind

    # Beat's sweeper notices the silent heartbeat and re-queues the run; a new worker picks it up.
    wait_for(lambda: runs_sweep()["requeued"] == 1, timeout=30, what="the sweeper to re-queue the run")
    survivor = _worker(llm)
    try:
        wait_for(
            lambda: Run.objects.get(pk=run_id).status == "succeeded", timeout=60, what="the run to finish"
        )
    finally:
        survivor.send_signal(signal.SIGTERM)
        survivor.wait(timeout=30)

    run = Run.objects.get(pk=run_id)
    assert run.output == "one / two"
    assert run.claims == 2
    steps = list(
        StepRun.objects.filter(run_id=run_id).order_by("created_at").values_list("step_id", "status", "claim")
    )
    assert steps == [("first", "succeeded", 1), ("second", "succeeded", 2), ("third", "succeeded", 2)]
    # The provider saw the first prompt once: the succeeded step was not executed again.
    prompts = [r.last_user_text for r in llm.received]
    assert prompts == ["first call", "second call", "second call"]
