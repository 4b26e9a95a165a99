"""Scale-out: two web processes, two worker processes and one beat on one PostgreSQL and one broker.
1,000 runs arrive through webhooks; one worker is killed with SIGKILL halfway. Every run ends, no step
that had succeeded is executed again, and the tenant's concurrency limit holds across the workers."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from django.db import connection

from agents.models import Run, StepRun
from billing.services import plan_set
from tests import processes
from tests.agents.helpers import create_agent
from tests.agents.test_runs import wait_for
from tests.conftest import SYSTEM

pytestmark = pytest.mark.django_db(transaction=True)

RUNS = 1000
LIMIT = 8
AGENT = {
    "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    "steps": [
        {"id": "ask", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "run {{ input.n }}"},
        {"id": "done", "type": "transform", "value": "{{ input.n }}:{{ steps.ask.output }}"},
    ],
    "output": "{{ steps.done.output }}",
}


def _env(llm) -> dict[str, str]:
    return processes.environment(
        **llm.provider_env(),
        FALCON_DB_POOL_MAX_SIZE="10",
        FALCON_RUN_HEARTBEAT_INTERVAL_S="1",
        FALCON_RUN_HEARTBEAT_TIMEOUT_S="3",
        FALCON_RUN_QUEUED_REDISPATCH_S="10",
    )


class RunningPeak:
    """Samples the tenant's running runs while the test goes on (its own database connection)."""

    def __init__(self, tenant_id) -> None:
        self.tenant_id = tenant_id
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> RunningPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        try:
            while not self._stop.wait(0.02):
                running = Run.objects.filter(tenant_id=self.tenant_id, status=Run.Status.RUNNING).count()
                self.peak = max(self.peak, running)
        finally:
            connection.close()


def test_a_thousand_webhook_runs_survive_a_killed_worker(world, alice_client, llm):
    from falcon.celery import app

    app.control.purge()
    llm.default_delay_s = 0.05
    plan_set(
        tenant=world.tenant_a,
        plan="enterprise",
        overrides={"runs": 100_000, "concurrent_runs": LIMIT},
        actor=SYSTEM,
    )
    agent_id = create_agent(alice_client, AGENT)
    hook = alice_client.post(
        "/api/v1/triggers/",
        {
            "name": "load",
            "agent": agent_id,
            "kind": "webhook",
            "config": {"auth": "none", "allow_unsigned": True, "rate_limit_per_minute": 10_000},
            "input_mapping": {"n": "{{ event.body.n }}"},
        },
        format="json",
    )
    assert hook.status_code == 201, hook.json()
    env = _env(llm)
    ports = [processes.free_port(), processes.free_port()]
    webs = [
        processes.spawn(
            [sys.executable, "-m", "gunicorn", "falcon.wsgi", "-b", f"127.0.0.1:{p}", "--threads", "8"], env
        )
        for p in ports
    ]
    worker_command = [
        "--concurrency=16" if c.startswith("--concurrency") else c for c in processes.CELERY_WORKER
    ]
    workers = [processes.spawn(worker_command, env) for _ in range(2)]
    beat = processes.spawn([sys.executable, "-m", "celery", "-A", "falcon", "beat", "-l", "WARNING"], env)
    running = [*webs, *workers, beat]
    try:
        for port in ports:
            health = f"http://127.0.0.1:{port}/healthz"
            wait_for(lambda health=health: processes.answers(health), timeout=60, what="gunicorn")
        with RunningPeak(world.tenant_a.pk) as sampler:

            def deliver(n: int) -> int:
                url = f"http://127.0.0.1:{ports[n % 2]}/hooks/{hook.json()['public_id']}"
                return httpx.post(url, json={"n": n}, timeout=60).status_code

            with ThreadPoolExecutor(max_workers=16) as pool:
                statuses = Counter(pool.map(deliver, range(RUNS)))
            assert statuses == {202: RUNS}, statuses

            def ended() -> int:
                return Run.objects.filter(tenant=world.tenant_a, status__in=Run.FINISHED).count()

            wait_for(lambda: ended() >= RUNS // 2, timeout=180, what="half of the runs")
            os.kill(workers[0].pid, signal.SIGKILL)
            workers[0].wait(timeout=10)
            wait_for(lambda: ended() == RUNS, timeout=300, what="every run to end")
    finally:
        processes.stop(*running)

    runs = list(Run.objects.filter(tenant=world.tenant_a).values_list("input", "status", "output", "claims"))
    assert len(runs) == RUNS
    assert Counter(status for _, status, _, _ in runs) == {"succeeded": RUNS}
    assert all(output.startswith(f"{run_input['n']}:") for run_input, _, output, _ in runs)
    # Each run's LLM step succeeded exactly once, and the provider saw it again only for a run whose
    # call was in flight on the killed worker (re-claimed: claims > 1), never for one already recorded.
    assert (
        StepRun.objects.filter(run__tenant=world.tenant_a, step_id="ask", status="succeeded").count() == RUNS
    )
    calls = Counter(r.last_user_text for r in llm.received)
    claims = {run_input["n"]: claim for run_input, _, _, claim in runs}
    assert set(calls) == {f"run {n}" for n in range(RUNS)}
    for n in range(RUNS):
        assert calls[f"run {n}"] <= claims[n], (n, calls[f"run {n}"], claims[n])
    # The concurrency limit held across both workers (and was reached).
    assert LIMIT - 2 <= sampler.peak <= LIMIT, sampler.peak
