"""Server time of the dashboard's busiest pages for a tenant with 10,000 runs (aim: under 100 ms).

Fills a throwaway database with 10,000 finished runs of 20 agents over 30 days (three steps each, one
an LLM call with tokens and cost), then asks each page through Django's test client, signed in, and
prints the median and p95 of the time the server took (the client adds no network). Not a test.

    make bench   (or: python -m benchmarks.dashboard_pages [runs])
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

from benchmarks.common import setup_django

PAGES_REPEAT = 30


def _fill(runs: int) -> tuple[Any, list[str]]:
    from django.utils import timezone

    from agents.runs.models import Run, StepRun
    from agents.workflows.services import agent_create, version_publish
    from billing.services import plan_set
    from tenants.audit import Actor
    from tenants.models import User
    from tenants.services import tenant_create

    actor = Actor.system("benchmark")
    owner = User.objects.create_user(email="bench-owner@example.com", password="bench-password-123")
    tenant = tenant_create(slug="bench", name="Bench", owner=owner, actor=actor)
    plan_set(tenant=tenant, plan="enterprise", actor=actor)
    definition = {
        "steps": [
            {"id": "prepare", "type": "transform", "value": "{{ input }}"},
            {
                "id": "ask",
                "type": "llm",
                "model": "sandbox/assistant",
                "prompt": "{{ steps.prepare.output }}",
            },
            {"id": "shape", "type": "transform", "value": {"answer": "{{ steps.ask.output }}"}},
        ]
    }
    agents = []
    for n in range(20):
        agent = agent_create(
            tenant=tenant,
            name=f"agent-{n:02d}",
            description="",
            actor=actor,
            created_by=None,
            definition=definition,
        )
        version = agent.versions.get()
        version_publish(version=version, actor=actor)
        agents.append((agent, version))
    now = timezone.now()
    rng = random.Random(7)
    batch_runs: list[Run] = []
    batch_steps: list[StepRun] = []
    ids = []
    for i in range(runs):
        agent, version = agents[i % len(agents)]
        created = now - timedelta(seconds=rng.randint(0, 30 * 86400))
        failed = rng.random() < 0.05
        run = Run(
            tenant=tenant, agent=agent, version=version, trigger=rng.choice(["api", "webhook", "schedule"]),
            status=Run.Status.FAILED if failed else Run.Status.SUCCEEDED, input={"n": i},
            output=None if failed else {"answer": f"reply {i}"},
            error={"code": "llm_error", "message": "provider said no"} if failed else None,
            created_at=created, enqueued_at=created, started_at=created,
            finished_at=created + timedelta(milliseconds=rng.randint(200, 4000)),
            prompt_tokens=120, completion_tokens=40, cost_usd=Decimal("0.0004"), claims=1,
        )  # fmt: skip
        batch_runs.append(run)
        ids.append(str(run.pk))
        for k, (step_id, step_type) in enumerate(
            (("prepare", "transform"), ("ask", "llm"), ("shape", "transform"))
        ):
            started = created + timedelta(milliseconds=100 * k)
            batch_steps.append(
                StepRun(
                    tenant=tenant,
                    run=run,
                    key=step_id,
                    step_id=step_id,
                    step_type=step_type,
                    status="succeeded",
                    input={"n": i},
                    output={"text": f"out {i}"},
                    model="sandbox/assistant" if k == 1 else "",
                    prompt_tokens=120 if k == 1 else 0,
                    completion_tokens=40 if k == 1 else 0,
                    cost_usd=Decimal("0.0004") if k == 1 else Decimal(0),
                    latency_ms=90,
                    started_at=started,
                    finished_at=started + timedelta(milliseconds=90),
                    created_at=started,
                )
            )
        if len(batch_runs) >= 2000:
            Run.objects.bulk_create(batch_runs)
            StepRun.objects.bulk_create(batch_steps)
            batch_runs, batch_steps = [], []
    Run.objects.bulk_create(batch_runs)
    StepRun.objects.bulk_create(batch_steps)
    return owner, ids


def _counter(queries: list[str]) -> Any:
    def count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        queries.append(sql)
        return execute(sql, params, many, context)

    return count


def _time(client: object, path: str) -> list[float]:
    timings = []
    for _ in range(PAGES_REPEAT):
        started = time.perf_counter()
        response = client.get(path)  # type: ignore[attr-defined]
        timings.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, (path, response.status_code)
    return timings


def main(runs: int = 10_000) -> None:
    os.environ.setdefault("ALLOWED_HOSTS", "testserver,localhost,127.0.0.1")
    setup_django()
    from django.db import connection
    from django.test import Client

    started = time.perf_counter()
    owner, ids = _fill(runs)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    print(f"filled {runs:,} runs ({3 * runs:,} steps) in {time.perf_counter() - started:.1f} s")
    client = Client()
    client.force_login(owner)
    pages = [
        ("overview /", "/"),
        ("runs list /runs/", "/runs/"),
        ("runs list, filtered", "/runs/?status=failed&trigger=webhook&agent=agent-03"),
        ("runs list, live refresh (htmx)", "/runs/"),
        ("run detail /runs/{id}/", f"/runs/{ids[len(ids) // 2]}/"),
        ("usage /usage/", "/usage/"),
        ("agents /agents/", "/agents/"),
    ]
    print(f"{'page':34} {'median ms':>10} {'p95 ms':>8} {'queries':>8}")
    for label, path in pages:
        headers = {"HTTP_HX_REQUEST": "true"} if "htmx" in label else {}
        if headers:
            client.defaults.update(headers)
        client.get(path)  # warm caches (templates, spec parse)
        queries: list[str] = []
        with connection.execute_wrapper(_counter(queries)):
            client.get(path)
        timings = _time(client, path)
        p95 = sorted(timings)[int(len(timings) * 0.95) - 1]
        print(f"{label:34} {statistics.median(timings):10.1f} {p95:8.1f} {len(queries):8d}")
        for key in headers:
            client.defaults.pop(key)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000)
