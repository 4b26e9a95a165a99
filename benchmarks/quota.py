"""The cost of ``quota_consume``: median microseconds per call, and 32 concurrent consumers on one counter.

Against PostgreSQL (the throwaway falcon_bench database). Each call is what a run start pays: one
conditional UPDATE ... RETURNING on the tenant's counter for this period (plus the subscription read
that finds the plan). The concurrent part also checks the result: the counter ends exactly at the limit.

    make bench   (or: python -m benchmarks.quota [calls])
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time

from benchmarks.common import setup_django


def main(calls: int = 5000) -> None:
    os.environ.setdefault("FALCON_DB_POOL_MAX_SIZE", "40")  # one connection per consumer thread
    setup_django()
    from django.db import connection

    from billing.errors import QuotaExceeded
    from billing.models import UsageCounter
    from billing.plans import Metric
    from billing.quotas import entitlement, quota_consume
    from billing.services import plan_set
    from tenants.audit import Actor
    from tenants.models import User
    from tenants.services import tenant_create

    actor = Actor.system("benchmark")
    owner = User.objects.create_user(email=f"quota-{time.time_ns()}@example.com")
    tenant = tenant_create(slug=f"quota-{time.time_ns() % 10**9}", name="Quota", owner=owner, actor=actor)
    plan_set(tenant=tenant, plan="enterprise", overrides={"runs": 10**9}, actor=actor)
    quota_consume(tenant, Metric.RUNS)  # the counter row exists from here on, as in steady state

    samples = []
    for _ in range(calls):
        started = time.perf_counter()
        quota_consume(tenant, Metric.RUNS)
        samples.append((time.perf_counter() - started) * 1e6)
    ent = entitlement(tenant)
    with_plan = statistics.median(samples)
    samples.clear()
    for _ in range(calls):
        started = time.perf_counter()
        quota_consume(tenant, Metric.RUNS, ent=ent)
        samples.append((time.perf_counter() - started) * 1e6)
    counter_only = statistics.median(samples)
    print(f"quota_consume, one thread, {calls} calls each (autocommit, PostgreSQL on loopback):")
    print(f"  median {with_plan:.0f} us per call including the plan lookup")
    print(f"  median {counter_only:.0f} us per call with the plan already known (the conditional UPDATE)")

    # 32 threads hammer one counter whose limit is 20000 units away: exactly that many succeed.
    threads, per_thread = 32, 1000
    used = UsageCounter.objects.get(tenant=tenant, metric="runs", scope="").used
    limit = used + 20_000
    plan_set(tenant=tenant, plan="enterprise", overrides={"runs": limit}, actor=actor)
    granted = [0] * threads
    barrier = threading.Barrier(threads + 1)

    def consume(index: int) -> None:
        barrier.wait()
        for _ in range(per_thread):
            try:
                quota_consume(tenant, Metric.RUNS)
                granted[index] += 1
            except QuotaExceeded:
                pass
        connection.close()

    pool = [threading.Thread(target=consume, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - started
    final = UsageCounter.objects.get(tenant=tenant, metric="runs", scope="").used
    attempts = threads * per_thread
    print(f"{threads} concurrent consumers, {attempts} calls on one counter with 20000 units left:")
    print(f"  {attempts / elapsed:.0f} calls/s ({sum(granted)} granted, {attempts - sum(granted)} refused)")
    exact = final == used + sum(granted) and final <= limit
    print(f"  counter ends at {final} (limit {limit}): {'exact' if exact else 'MISCOUNTED'}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5000)
