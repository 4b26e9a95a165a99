"""Graceful stop: a worker sent SIGTERM finishes its in-flight step, hands the run back to the queue, and
exits within its grace period; the next worker finishes the run without repeating completed steps."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest

from agents.models import Run, StepRun
from tests import processes
from tests.agents.helpers import create_agent
from tests.agents.test_runs import wait_for
from tests.servers.llm import Reply

pytestmark = pytest.mark.django_db(transaction=True)

TWO_CALLS = {
    "steps": [
        {
            "id": "first",
            "type": "llm",
            "model": "openai/gpt-4o-mini",
            "prompt": "first call",
            "timeout_s": 30,
        },
        {"id": "second", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "second call"},
    ],
    "output": "{{ steps.first.output }} / {{ steps.second.output }}",
}


def _worker(llm, grace_s: int) -> subprocess.Popen[bytes]:
    env = processes.environment(**llm.provider_env(), FALCON_WORKER_GRACE_S=str(grace_s))
    return processes.spawn(processes.CELERY_WORKER, env)


def _stop(worker: subprocess.Popen[bytes]) -> float:
    """SIGTERM, then the seconds until the process exited."""
    started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    return time.monotonic() - started


def _start_run(client, agent_id: str) -> str:
    response = client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {}}, format="json")
    assert response.status_code == 202, response.json()
    return response.json()["id"]


def _finish_with_a_new_worker(llm, run_id: str) -> Run:
    survivor = _worker(llm, grace_s=25)
    try:
        wait_for(
            lambda: Run.objects.get(pk=run_id).status == "succeeded", timeout=60, what="the run to finish"
        )
    finally:
        _stop(survivor)
    return Run.objects.get(pk=run_id)


def test_sigterm_finishes_the_step_in_flight_then_hands_the_run_back(world, alice_client, llm):
    from falcon.celery import app

    app.control.purge()
    agent_id = create_agent(alice_client, TWO_CALLS)
    llm.enqueue(Reply(text="one", delay_s=3), Reply(text="two"))
    worker = _worker(llm, grace_s=20)
    run_id = _start_run(alice_client, agent_id)
    wait_for(lambda: len(llm.received) == 1, timeout=60, what="the first provider call")
    took = _stop(worker)

    assert took < 20  # the step in flight finished (3 s), then the worker let go of the run
    run = Run.objects.get(pk=run_id)
    assert run.status == "queued"
    assert list(StepRun.objects.filter(run_id=run_id).values_list("step_id", "status", "claim")) == [
        ("first", "succeeded", 1)
    ]
    assert len(llm.received) == 1  # the second step was not started by the stopping worker

    run = _finish_with_a_new_worker(llm, run_id)
    assert run.output == "one / two"
    steps = list(StepRun.objects.filter(run_id=run_id).order_by("created_at").values_list("step_id", "claim"))
    assert steps == [("first", 1), ("second", 2)]
    assert [r.last_user_text for r in llm.received] == ["first call", "second call"]  # none twice


def test_a_step_longer_than_the_grace_period_is_dropped_and_the_run_handed_back(world, alice_client, llm):
    from falcon.celery import app

    app.control.purge()
    agent_id = create_agent(alice_client, TWO_CALLS)
    llm.enqueue(Reply(text="late", delay_s=15), Reply(text="one"), Reply(text="two"))
    worker = _worker(llm, grace_s=1)
    run_id = _start_run(alice_client, agent_id)
    wait_for(lambda: len(llm.received) == 1, timeout=60, what="the first provider call")
    took = _stop(worker)

    assert took < 10  # did not wait for the 15 s answer
    assert Run.objects.get(pk=run_id).status == "queued"
    assert not StepRun.objects.filter(run_id=run_id, status="succeeded").exists()

    run = _finish_with_a_new_worker(llm, run_id)
    assert run.output == "one / two"
    steps = list(StepRun.objects.filter(run_id=run_id).values_list("step_id", "status", "claim"))
    assert sorted(steps) == [("first", "succeeded", 2), ("second", "succeeded", 2)]
