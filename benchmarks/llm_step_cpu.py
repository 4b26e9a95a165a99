"""Where one LLM step's CPU goes: Falcon's own code, LiteLLM's call, Celery's task handling (issue #15).

Runs of a one-step agent (`llm`, the loopback provider answering at once) executed one after the other
in this process, as a worker thread executes them:

- Falcon: the CPU time of the thread that executes the run (claim, engine, quota reservation and
  settlement, pricing, the step's record, the finish, with Django and psycopg under them);
- LiteLLM: the CPU time the same runs cost on the process's other threads (the event loop where
  LiteLLM's async call waits, and the thread where LiteLLM runs its success logging);
- Celery: a real worker process (threads pool) given tasks whose run does not exist, so that the
  task does one read and returns: its CPU per task is the broker's and Celery's share of a run.

The loopback provider runs in a child process, so its CPU is not counted.

    python -m benchmarks.llm_step_cpu [runs]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

from benchmarks.common import cpu_seconds, make_agent, setup_django, start_worker, wait_worker_ready

GOAL_MS = 5.0
PROVIDER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from tests.servers.llm import LlmServer
server = LlmServer().start()
print(json.dumps(server.provider_env()), flush=True)
sys.stdin.read()
"""


def _provider() -> tuple[subprocess.Popen[str], dict[str, str]]:
    root = str(Path(__file__).resolve().parent.parent)
    child = subprocess.Popen(
        [sys.executable, "-c", PROVIDER, root],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    return child, json.loads(child.stdout.readline())


def _process_cpu() -> float:
    return cpu_seconds(os.getpid())


def _celery_per_task(tasks: int) -> float:
    """Worker CPU per task for tasks that find no run (one SELECT each), in ms."""
    import redis

    from agents.runs.tasks import run_execute_task
    from falcon import queues

    worker = start_worker(concurrency=8)
    broker = redis.Redis.from_url(os.environ["CELERY_BROKER_URL"])
    try:
        wait_worker_ready()
        unacked = broker.hlen("unacked")  # what earlier killed workers left there
        before = cpu_seconds(worker.pid)
        for _ in range(tasks):
            run_execute_task.delay(str(uuid.uuid4()))
        while broker.llen(queues.RUNS) or broker.hlen("unacked") > unacked:
            time.sleep(0.02)
        return (cpu_seconds(worker.pid) - before) * 1000 / tasks
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    provider, provider_env = _provider()
    os.environ.update(provider_env)
    try:
        setup_django()
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from agents.llm.gateway import warm_up
        from agents.runs.execution import run_execute
        from agents.runs.services import run_start
        from tenants.audit import Actor

        warm_up()
        agent = make_agent(
            {"steps": [{"id": "ask", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "hi"}]},
            concurrent_runs=runs + 100,
        )
        actor = Actor.system("benchmark")
        warm = 50
        ids = [run_start(agent=agent, input={}, actor=actor, enqueue=False)[0].pk for _ in range(runs + warm)]
        for run_id in ids[: warm - 1]:
            run_execute(run_id)
        with CaptureQueriesContext(connection) as captured:
            run_execute(ids[warm - 1])
        statements = len(captured.captured_queries)
        falcon_s = 0.0
        process_before = _process_cpu()
        started = time.perf_counter()
        for run_id in ids[warm:]:
            before = time.thread_time()
            status = run_execute(run_id)
            falcon_s += time.thread_time() - before
            assert status == "succeeded", status
        wall = time.perf_counter() - started
        process_s = _process_cpu() - process_before
        celery_ms = _celery_per_task(1000)
    finally:
        provider.kill()
    falcon_ms = falcon_s * 1000 / runs
    litellm_ms = max(0.0, process_s - falcon_s) * 1000 / runs
    print(
        f"CPU per LLM step: {runs} runs of one llm step, one after the other (the provider answers at once)"
    )
    print(f"  statements per run:          {statements}")
    verdict = "met" if falcon_ms <= GOAL_MS else "not met"
    print(f"  Falcon's own code:           {falcon_ms:.2f} ms per step (goal <= {GOAL_MS:g} ms: {verdict})")
    print(f"  LiteLLM's call:              {litellm_ms:.2f} ms per step (other threads of the process)")
    print(f"  Celery's task handling:      {celery_ms:.2f} ms per task (a worker, threads pool, Redis)")
    print(f"  all together:                {falcon_ms + litellm_ms + celery_ms:.2f} ms per run")
    print(
        f"  wall per run:                {wall * 1000 / runs:.1f} ms (the loopback provider's round trip too)"
    )


if __name__ == "__main__":
    main()
