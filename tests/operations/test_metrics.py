"""Prometheus metrics: the endpoint's protection, the figures a run, a webhook and a refusal leave, and
the sum across processes (multiprocess mode)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from billing.services import plan_set
from tests.agents.helpers import SANDBOX_ECHO, create_agent
from tests.conftest import SYSTEM

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "metrics-token-0123456789"


def scrape(client: Client) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
def metrics_on(settings):
    settings.FALCON_METRICS_TOKEN = TOKEN
    return Client()


def test_metrics_are_off_without_a_token_and_need_it_when_on(settings):
    client = Client()
    settings.FALCON_METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    settings.FALCON_METRICS_TOKEN = TOKEN
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


@pytest.mark.django_db(transaction=True)
def test_a_run_and_a_webhook_leave_their_figures(world, alice_client, celery_worker, metrics_on):
    before = scrape(metrics_on)
    agent_id = create_agent(alice_client, SANDBOX_ECHO)
    run = alice_client.post(
        f"/api/v1/agents/{agent_id}/runs", {"input": {"name": "Ada"}, "wait_s": 30}, format="json"
    ).json()
    assert run["status"] == "succeeded", run
    hook = alice_client.post(
        "/api/v1/triggers/", {"name": "h", "agent": agent_id, "kind": "webhook"}, format="json"
    ).json()
    unsigned = metrics_on.post(f"/hooks/{hook['public_id']}", b"{}", content_type="application/json")
    assert unsigned.status_code == 401
    after = scrape(metrics_on)

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert grew("falcon_runs_started_total", trigger="manual") == 1
    assert grew("falcon_runs_finished_total", status="succeeded", trigger="manual") == 1
    assert grew("falcon_run_duration_seconds_count", status="succeeded") == 1
    assert grew("falcon_run_queue_wait_seconds_count", trigger="manual") == 1
    assert grew("falcon_step_duration_seconds_count", type="llm", status="succeeded") == 1
    assert grew("falcon_step_duration_seconds_count", type="transform", status="succeeded") == 1
    assert grew("falcon_llm_calls_total", provider="sandbox", model="sandbox/echo", outcome="ok") == 1
    assert grew("falcon_llm_tokens_total", provider="sandbox", model="sandbox/echo", direction="input") > 0
    assert grew("falcon_llm_latency_seconds_count", provider="sandbox", model="sandbox/echo") == 1
    assert grew("falcon_webhook_requests_total", outcome="401") == 1
    assert grew("falcon_webhook_acceptance_seconds_count", outcome="401") == 1
    for status in ("queued", "running", "waiting"):
        assert ("falcon_runs_in_progress", (("status", status),)) in after
    # no tenant, run or agent ids among the labels
    names = {label for _, labels in after for label, _ in labels}
    assert not names & {"tenant", "tenant_id", "run", "run_id", "agent", "agent_id"}
    assert (
        world.tenant_a.slug
        not in metrics_on.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
    )


@pytest.mark.django_db
def test_a_quota_refusal_is_counted_by_metric_and_plan(world, alice_client, metrics_on):
    agent_id = create_agent(alice_client, {"steps": [{"id": "t", "type": "transform", "value": "x"}]})
    plan_set(tenant=world.tenant_a, plan="enterprise", overrides={"runs": 1}, actor=SYSTEM)
    url = f"/api/v1/agents/{agent_id}/runs"
    assert alice_client.post(url, {"input": {}}, format="json").status_code == 202
    before = scrape(metrics_on)
    assert alice_client.post(url, {"input": {}}, format="json").status_code == 429
    after = scrape(metrics_on)
    assert (
        value(after, "falcon_quota_rejections_total", metric="runs", plan="enterprise")
        - value(before, "falcon_quota_rejections_total", metric="runs", plan="enterprise")
        == 1
    )


@pytest.mark.django_db
def test_figures_of_other_processes_are_summed(metrics_on):
    """A separate process (a gunicorn worker, a Celery worker) writes to the shared directory; this
    process's scrape includes its figures, after it has exited too."""
    before = value(scrape(metrics_on), "falcon_runs_started_total", trigger="schedule")
    code = (
        "import django; django.setup()\n"
        "from falcon import metrics\n"
        "metrics.RUNS_STARTED.labels('schedule').inc(5)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "falcon.settings"}
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=60)
    assert value(scrape(metrics_on), "falcon_runs_started_total", trigger="schedule") - before == 5
