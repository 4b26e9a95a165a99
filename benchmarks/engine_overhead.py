"""Engine overhead: a 10-step transform-only workflow.

Prints runs per second end to end on one worker (API service -> Redis -> worker -> PostgreSQL) and the
worker's CPU milliseconds per step, plus the pure engine's CPU per step (no database, no broker).

    make bench   (or: python -m benchmarks.engine_overhead [runs])
"""

from __future__ import annotations

import sys
import time

from benchmarks.common import (
    cpu_seconds,
    make_agent,
    setup_django,
    start_worker,
    wait_all_finished,
    wait_worker_ready,
)

STEPS = 10
DEFINITION = {
    "inputs": {"type": "object", "properties": {"n": {"type": "integer"}}},
    "steps": [{"id": "s0", "type": "transform", "value": "{{ input.n }}"}]
    + [
        {"id": f"s{i}", "type": "transform", "value": f"{{{{ steps.s{i - 1}.output + 1 }}}}"}
        for i in range(1, STEPS)
    ],
}


def pure_engine_ms_per_step(runs: int) -> float:
    from agents.engine.runner import Runner
    from agents.engine.spec import WorkflowSpec

    class NullHooks:
        def checkpoint(self, record):
            pass

        def step_started(self, key):
            pass

        def cancelled(self):
            return False

        def sleep(self, seconds):
            pass

        def thread_done(self):
            pass

    spec = WorkflowSpec.model_validate(DEFINITION)
    started = time.process_time()
    for n in range(runs):
        outcome = Runner(spec, input={"n": n}, hooks=NullHooks()).run()  # type: ignore[arg-type]
        assert outcome.output == n + STEPS - 1
    return (time.process_time() - started) * 1000 / (runs * STEPS)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    setup_django()
    from agents.runs.services import run_start
    from tenants.audit import Actor

    agent = make_agent(DEFINITION)
    worker = start_worker(concurrency=8)
    try:
        wait_worker_ready()
        cpu_before = cpu_seconds(worker.pid)
        actor = Actor.system("benchmark")
        started = time.monotonic()
        run_ids = [run_start(agent=agent, input={"n": n}, actor=actor)[0].pk for n in range(runs)]
        finished = wait_all_finished(run_ids, timeout=600)
        worker_cpu = cpu_seconds(worker.pid) - cpu_before
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    from agents.models import Run

    succeeded = Run.objects.filter(pk__in=run_ids, status="succeeded").count()
    wall = finished - started
    print(f"engine overhead: {runs} runs x {STEPS} transform steps, 1 worker (threads pool, 8 threads)")
    print(f"  succeeded:                   {succeeded}/{runs}")
    print(f"  end-to-end throughput:       {runs / wall:.1f} runs/s ({wall:.2f} s wall, enqueue included)")
    print(
        f"  worker CPU per step:         {worker_cpu * 1000 / (runs * STEPS):.2f} ms (checkpoints included)"
    )
    print(f"  pure engine CPU per step:    {pure_engine_ms_per_step(200):.3f} ms (no database, no broker)")


if __name__ == "__main__":
    main()
