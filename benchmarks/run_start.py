"""What one run start costs: statements and milliseconds per `run_start` (the queued path's first
half, what every API call, webhook and schedule pays), with run starts on the tenant's audit chain
and off it (the default: the run itself records who, which key and which trigger).

    make bench   (or: python -m benchmarks.run_start [runs])
"""

from __future__ import annotations

import statistics
import sys
import time
from typing import Any

from benchmarks.common import make_agent, setup_django


def _measure(agent: Any, runs: int) -> tuple[float, float, int]:
    from django.db import connection

    from agents.runs.services import run_start
    from tenants.audit import Actor

    actor = Actor.system("benchmark")
    statements: list[str] = []

    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        statements.append(sql)
        return execute(sql, params, many, context)

    run_start(agent=agent, input={"n": -1}, actor=actor, enqueue=False)  # warm (spec cache, compiled SQL)
    timings = []
    with connection.execute_wrapper(count):
        for n in range(runs):
            started = time.perf_counter()
            run_start(agent=agent, input={"n": n}, actor=actor, enqueue=False)
            timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings), sorted(timings)[int(len(timings) * 0.95) - 1], len(statements) // runs


def _concurrent(agent: Any, runs: int, threads: int = 8) -> float:
    """Run starts per second from ``threads`` callers at once on one tenant."""
    from concurrent.futures import ThreadPoolExecutor

    from django.db import connection

    from agents.runs.services import run_start
    from tenants.audit import Actor

    actor = Actor.system("benchmark")

    def start(n: int) -> None:
        try:
            run_start(agent=agent, input={"n": n}, actor=actor, enqueue=False)
        finally:
            connection.close()

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(start, range(runs)))
    return runs / (time.perf_counter() - started)


def main(runs: int = 500) -> None:
    setup_django()
    from tenants.models import Tenant

    agent = make_agent({"steps": [{"id": "t", "type": "transform", "value": "{{ input.n }}"}]})
    print(f"{'run starts':40} {'median ms':>10} {'p95 ms':>8} {'statements':>11} {'8 callers /s':>13}")
    for chained in (False, True):
        Tenant.objects.filter(pk=agent.tenant_id).update(audit_run_starts=chained)
        median, p95, statements = _measure(agent, runs)
        per_second = _concurrent(agent, runs)
        label = "on the audit chain (opt-in)" if chained else "recorded on the run (default)"
        print(f"{label:40} {median:10.2f} {p95:8.2f} {statements:11d} {per_second:13.0f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 500)
