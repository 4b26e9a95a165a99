"""Claiming, the per-tenant concurrency limit and the sweeper, without a worker."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from agents.execution import run_claim, run_execute, runs_sweep
from agents.models import Run
from agents.services.agents import agent_create, version_publish
from agents.services.runs import run_start
from tenants.audit import Actor

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")


@pytest.fixture
def agent(world):
    created = agent_create(
        tenant=world.tenant_a,
        name="calc",
        description="",
        actor=SYSTEM,
        created_by=None,
        definition={"steps": [{"id": "s", "type": "transform", "value": "{{ 6 * 7 }}"}]},
    )
    version_publish(version=created.versions.get(), actor=SYSTEM)
    created.refresh_from_db()
    return created


def test_a_run_is_claimed_once(agent):
    run, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    assert run_claim(run.pk) is not None
    assert run_claim(run.pk) is None  # a second delivery of the same task finds nothing to claim
    assert Run.objects.get(pk=run.pk).claims == 1


def test_per_tenant_concurrency_keeps_excess_runs_queued(agent, settings):
    settings.FALCON_RUN_CONCURRENCY_PER_TENANT = 1
    first, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    second, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    assert run_claim(first.pk) is not None
    assert run_claim(second.pk) is None
    assert Run.objects.get(pk=second.pk).status == "queued"
    Run.objects.filter(pk=first.pk).update(status="succeeded")
    assert run_execute(second.pk) == "succeeded"
    assert Run.objects.get(pk=second.pk).output == 42


def test_sweeper_requeues_orphans_then_gives_up(agent, settings):
    settings.FALCON_RUN_MAX_CLAIMS = 2
    run, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    assert run_claim(run.pk) is not None
    stale = timezone.now() - timedelta(seconds=settings.FALCON_RUN_HEARTBEAT_TIMEOUT_S + 1)
    Run.objects.filter(pk=run.pk).update(heartbeat_at=stale)
    assert runs_sweep()["requeued"] == 1
    assert Run.objects.get(pk=run.pk).status == "queued"
    assert run_claim(run.pk) is not None
    Run.objects.filter(pk=run.pk).update(heartbeat_at=stale)
    assert runs_sweep()["failed"] == 1
    failed = Run.objects.get(pk=run.pk)
    assert failed.status == "failed"
    assert failed.error["code"] == "worker_lost"


def test_fresh_heartbeats_are_left_alone(agent):
    run, _ = run_start(agent=agent, input={}, actor=SYSTEM)
    assert run_claim(run.pk) is not None
    assert runs_sweep() == {"requeued": 0, "failed": 0, "redispatched": 0}
    assert Run.objects.get(pk=run.pk).status == "running"
