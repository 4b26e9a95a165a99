"""I/O concurrency: 500 runs of one `llm` step against the loopback provider answering after 1 s.

Prints the peak number of runs in flight at the provider and the wall time (the floor is
500 / in-flight seconds).

    make bench   (or: python -m benchmarks.io_concurrency [runs] [worker threads])
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

DELAY_S = 1.0


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 160
    setup_django()
    from agents.models import Run
    from agents.runs.services import run_start
    from tenants.audit import Actor
    from tests.servers.llm import LlmServer

    server = LlmServer().start()
    server.default_delay_s = DELAY_S
    agent = make_agent(
        {"steps": [{"id": "ask", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "hi"}]},
        concurrent_runs=runs,
    )
    worker = start_worker(
        concurrency=threads,
        extra_env={
            **server.provider_env(),
        },
    )
    try:
        wait_worker_ready()
        cpu_before = cpu_seconds(worker.pid)
        actor = Actor.system("benchmark")
        started = time.monotonic()
        run_ids = [run_start(agent=agent, input={}, actor=actor)[0].pk for _ in range(runs)]
        enqueued = time.monotonic()
        finished = wait_all_finished(run_ids, timeout=600)
        worker_cpu = cpu_seconds(worker.pid) - cpu_before
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        server.stop()
    succeeded = Run.objects.filter(pk__in=run_ids, status="succeeded").count()
    wall = finished - started
    print(
        f"I/O concurrency: {runs} runs of one llm step, provider answers after {DELAY_S:g} s, "
        f"1 worker (threads pool, {threads} threads)"
    )
    print(f"  succeeded:                   {succeeded}/{runs}")
    print(f"  peak runs in flight:         {server.peak_in_flight}")
    print(
        f"  wall time:                   {wall:.2f} s (enqueue {enqueued - started:.2f} s; "
        f"floor {runs * DELAY_S / max(1, server.peak_in_flight):.2f} s at that concurrency)"
    )
    print(f"  worker CPU:                  {worker_cpu:.2f} s ({worker_cpu * 1000 / runs:.1f} ms per run)")


if __name__ == "__main__":
    main()
