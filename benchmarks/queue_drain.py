"""Queue drain: one worker process works off 1000 queued runs of the three-step transform workflow
(the side-by-side run's workflow A, queued mode, without the web side).

Prints runs per second and the worker's CPU per run, the figure that decides whether the queue keeps
up with webhook acceptance (docs/decisions/0013-run-throughput.md §10-11).

    make bench   (or: python -m benchmarks.queue_drain [runs] [worker threads])
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
from benchmarks.vs_n8n import THREE_STEPS


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    setup_django()
    from agents.models import Run
    from agents.runs.services import run_start
    from tenants.audit import Actor

    agent = make_agent(THREE_STEPS, concurrent_runs=runs)
    actor = Actor.system("benchmark")
    # Queued before the worker starts: the worker's time is spent on the backlog alone.
    run_ids = [
        run_start(agent=agent, input={"name": "n", "value": i}, actor=actor)[0].pk for i in range(runs)
    ]
    worker = start_worker(concurrency=threads)
    try:
        wait_worker_ready()
        cpu_before = cpu_seconds(worker.pid)
        started = time.monotonic()
        finished = wait_all_finished(run_ids, timeout=600)
        worker_cpu = cpu_seconds(worker.pid) - cpu_before
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    wall = finished - started
    succeeded = Run.objects.filter(pk__in=run_ids, status="succeeded").count()
    print(f"Queue drain: {runs} queued runs of 3 transform steps, 1 worker (threads pool, {threads} threads)")
    print(f"  succeeded:                   {succeeded}/{runs}")
    print(f"  drained in:                  {wall:.2f} s ({runs / wall:.0f} runs/s)")
    per_run = worker_cpu * 1000 / runs
    print(f"  worker CPU:                  {per_run:.2f} ms per run ({worker_cpu / wall:.2f} cores)")


if __name__ == "__main__":
    main()
