"""Shared set-up for the benchmarks: a throwaway database, a tenant, an agent, a real worker process."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH_DB = "falcon_bench"


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (1-99) of ``values``; NaN when there are none."""
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 2 else values[0]


def setup_django() -> None:
    os.environ.setdefault("DATABASE_URL", f"postgres://falcon@127.0.0.1:5432/{BENCH_DB}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "falcon.settings")
    _recreate_database(os.environ["DATABASE_URL"])
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def _recreate_database(url: str) -> None:
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin_url = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def make_agent(definition: dict[str, Any], *, concurrent_runs: int | None = None) -> Any:
    """An agent in a new tenant on Enterprise (no run quota), optionally with a concurrency figure."""
    from agents.workflows.services import agent_create, version_publish
    from billing.services import plan_set
    from tenants.audit import Actor
    from tenants.models import User
    from tenants.services import tenant_create

    actor = Actor.system("benchmark")
    owner = User.objects.create_user(email=f"bench-{time.time_ns()}@example.com")
    tenant = tenant_create(slug=f"bench-{time.time_ns() % 10**9}", name="Bench", owner=owner, actor=actor)
    overrides = {} if concurrent_runs is None else {"concurrent_runs": concurrent_runs}
    plan_set(tenant=tenant, plan="enterprise", overrides=overrides, actor=actor)
    agent = agent_create(
        tenant=tenant, name="bench", description="", actor=actor, created_by=None, definition=definition
    )
    version_publish(version=agent.versions.get(), actor=actor)
    agent.refresh_from_db()
    return agent


def start_worker(concurrency: int, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, **(extra_env or {})}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "falcon",
            "worker",
            "--pool=threads",
            f"--concurrency={concurrency}",
            "--loglevel=ERROR",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process


def wait_worker_ready(timeout: float = 60) -> None:
    from falcon.celery import app

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if app.control.ping(timeout=0.5):
            return
    raise RuntimeError("the worker did not start")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def wait_all_finished(run_ids: list[Any], timeout: float) -> float:
    from agents.models import Run

    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        left = Run.objects.filter(pk__in=run_ids).exclude(status__in=Run.FINISHED).count()
        if left == 0:
            return time.monotonic()
        time.sleep(0.05)
    raise RuntimeError("runs did not finish in time")
