"""Every plan limit through the public surface: the request that crosses it gets the documented error
and nothing is half-created; downgrades leave objects read-only; usage, caps and billing endpoints."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from agents.models import Agent, Run, StepRun, Trigger
from billing.models import Subscription
from billing.services import plan_set, retention_prune
from connectors.models import Connector
from tenants.audit import Actor
from tenants.models import AuditEvent, Invitation
from tenants.permissions import Role
from tests.agents.helpers import create_agent
from tests.conftest import key_client, member, session_client

pytestmark = pytest.mark.django_db

SYSTEM = Actor.system("tests")
STEP = {"steps": [{"id": "s", "type": "transform", "value": 1}]}


def _free(world) -> None:
    plan_set(tenant=world.tenant_a, plan="free", actor=SYSTEM)


def _agent(client, n: int):
    return client.post("/api/v1/agents/", {"name": f"agent-{n}", "definition": STEP}, format="json")


def _connector(client, n: int):
    return client.post(
        "/api/v1/connectors/",
        {
            "name": f"crm-{n}",
            "kind": "http",
            "config": {"base_url": "https://api.example.com", "auth": "bearer"},
            "secrets": {"token": "t0ken-value-123"},
        },
        format="json",
    )


def _invite(client, n: int):
    return client.post("/api/v1/invitations/", {"email": f"p{n}@a.example", "role": "viewer"}, format="json")


def _assert_plan_limit(response, metric: str, limit: int, used: int) -> None:
    assert response.status_code == 402, response.json()
    error = response.json()["error"]
    assert (error["code"], error["metric"], error["limit"], error["used"]) == (
        "plan_limit",
        metric,
        limit,
        used,
    )
    assert "Free plan allows" in error["message"]


@pytest.mark.parametrize(
    ("metric", "create", "model", "already"),
    [
        ("agents", _agent, Agent, 0),
        ("connectors", _connector, Connector, 0),
        ("members", _invite, Invitation, 2),  # alice and bob hold two of the three seats
    ],
)
def test_the_creation_that_crosses_a_count_limit_is_refused_whole(
    world, alice_client, metric, create, model, already
):
    _free(world)
    limit = 3
    for n in range(limit - already):
        assert create(alice_client, n).status_code == 201
    objects = model.objects.filter(tenant=world.tenant_a).count()
    audit = AuditEvent.objects.filter(tenant=world.tenant_a).count()

    response = create(alice_client, 99)

    _assert_plan_limit(response, metric, limit, limit)
    assert model.objects.filter(tenant=world.tenant_a).count() == objects
    assert AuditEvent.objects.filter(tenant=world.tenant_a).count() == audit


def test_the_trigger_that_crosses_the_limit_is_refused(world, alice_client):
    _free(world)
    agent_id = create_agent(alice_client, STEP)
    for n in range(5):
        made = alice_client.post(
            "/api/v1/triggers/",
            {"name": f"t{n}", "agent": agent_id, "kind": "webhook", "config": {}},
            format="json",
        )
        assert made.status_code == 201, made.json()
    response = alice_client.post(
        "/api/v1/triggers/", {"name": "t6", "agent": agent_id, "kind": "webhook", "config": {}}, format="json"
    )
    _assert_plan_limit(response, "triggers", 5, 5)
    assert Trigger.objects.filter(tenant=world.tenant_a).count() == 5


def test_free_refuses_a_cron_schedule_denser_than_its_minimum(world, alice_client):
    _free(world)
    agent_id = create_agent(alice_client, STEP)
    every_minute = alice_client.post(
        "/api/v1/triggers/",
        {"name": "s", "agent": agent_id, "kind": "schedule", "config": {"cron": "*/5 * * * *"}},
        format="json",
    )
    assert every_minute.status_code == 402
    error = every_minute.json()["error"]
    assert (error["metric"], error["limit"], error["used"]) == ("min_schedule_interval_s", 900, 300)
    assert "config.cron" in error["fields"]
    hourly = alice_client.post(
        "/api/v1/triggers/",
        {"name": "s", "agent": agent_id, "kind": "schedule", "config": {"cron": "0 9-17 * * 1-5"}},
        format="json",
    )
    assert hourly.status_code == 201, hourly.json()
    bad = alice_client.post(
        "/api/v1/triggers/",
        {"name": "s2", "agent": agent_id, "kind": "schedule", "config": {"cron": "61 * * * *"}},
        format="json",
    )
    assert (bad.status_code, bad.json()["error"]["fields"].keys()) == (400, {"config.cron"})


def test_a_downgrade_pauses_triggers_and_makes_excess_objects_read_only(world, alice_client):
    plan_set(tenant=world.tenant_a, plan="team", actor=SYSTEM)
    ids = [create_agent(alice_client, STEP, name=f"a{n}") for n in range(4)]
    hook = alice_client.post(
        "/api/v1/triggers/", {"name": "h", "agent": ids[0], "kind": "webhook", "config": {}}, format="json"
    ).json()

    _free(world)

    trigger = Trigger.objects.get(pk=hook["id"])
    assert not trigger.enabled
    assert "Free plan" in trigger.disabled_reason
    assert not trigger.periodic_task_id or not trigger.periodic_task.enabled
    paused = AuditEvent.objects.filter(tenant=world.tenant_a, action="trigger.disabled").get()
    assert paused.changes["after"]["reason"] == trigger.disabled_reason
    # Four agents on a plan of three: nothing deleted, but changes are refused with the plan named...
    refused = alice_client.patch(f"/api/v1/agents/{ids[1]}", {"description": "x"}, format="json")
    _assert_plan_limit(refused, "agents", 3, 4)
    assert "read-only" in refused.json()["error"]["message"]
    assert Agent.objects.filter(tenant=world.tenant_a).count() == 4
    # ...runs of existing agents still work, and archiving one brings the rest back within the plan.
    assert alice_client.post(f"/api/v1/agents/{ids[1]}/runs", {"input": {}}, format="json").status_code == 202
    assert alice_client.post(f"/api/v1/agents/{ids[3]}/archive").status_code == 200
    assert (
        alice_client.patch(f"/api/v1/agents/{ids[1]}", {"description": "x"}, format="json").status_code == 200
    )
    enabled = alice_client.patch(f"/api/v1/triggers/{hook['id']}", {"enabled": True}, format="json")
    assert enabled.status_code == 200, enabled.json()
    assert enabled.json()["disabled_reason"] == ""


def test_features_follow_the_plan(world, alice_client):
    _free(world)
    mfa = alice_client.patch("/api/v1/tenant", {"require_mfa": True}, format="json")
    assert mfa.status_code == 402
    assert (mfa.json()["error"]["metric"], mfa.json()["error"]["fields"].keys()) == (
        "mfa_enforcement",
        {"require_mfa"},
    )
    export = alice_client.get("/api/v1/audit-events/export")
    assert (export.status_code, export.json()["error"]["metric"]) == (402, "audit_export")
    plan_set(tenant=world.tenant_a, plan="team", actor=SYSTEM)
    assert alice_client.get("/api/v1/audit-events/export").status_code == 200


def test_usage_lists_every_metric_with_its_limit_and_period(world, alice_client, bob_client, charlie_client):
    plan_set(tenant=world.tenant_a, plan="pro", actor=SYSTEM)
    agent_id = create_agent(alice_client, STEP)
    alice_client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {}}, format="json")

    body = bob_client.get("/api/v1/usage").json()  # a viewer may read usage

    assert body["plan"] == "pro"
    metrics = body["metrics"]
    assert metrics["runs"] == {
        "used": 1,
        "limit": 100_000,
        "included": 20_000,
        "period_start": body["period_start"],
        "period_end": body["period_end"],
    }
    assert metrics["agents"] == {"used": 1, "limit": 25}
    assert metrics["members"] == {"used": 2, "limit": 10}
    assert metrics["llm_spend_usd"]["limit"] == "500"
    assert metrics["llm_cost_usd"]["limit"] is None  # no spend cap set
    assert metrics["min_schedule_interval_s"] == {"limit": 60}
    assert set(metrics) >= {"llm_tokens", "connectors", "triggers", "concurrent_runs", "retention_days"}
    # Another tenant's usage is its own.
    assert charlie_client.get("/api/v1/usage").json()["metrics"]["runs"]["used"] == 0


def test_spend_caps_by_role_with_clear_errors(world, alice_client, bob_client):
    admin = session_client(member(world.tenant_a, Role.ADMIN), world.tenant_a)
    builder = session_client(member(world.tenant_a, Role.BUILDER), world.tenant_a)
    assert builder.put("/api/v1/billing/spend-cap", {"monthly_usd": "10"}, format="json").status_code == 403
    bad = admin.put("/api/v1/billing/spend-cap", {"monthly_usd": "-3"}, format="json")
    assert (bad.status_code, list(bad.json()["error"]["fields"])) == (400, ["monthly_usd"])
    ok = admin.put("/api/v1/billing/spend-cap", {"monthly_usd": "50"}, format="json")
    assert (ok.status_code, ok.json()) == (200, {"monthly_usd": "50.00"})
    assert bob_client.get("/api/v1/billing/spend-cap").json() == {"monthly_usd": "50.00"}

    agent_id = create_agent(alice_client, STEP)
    too_high = admin.put(f"/api/v1/agents/{agent_id}/spend-cap", {"monthly_usd": "80"}, format="json")
    assert (too_high.status_code, list(too_high.json()["error"]["fields"])) == (400, ["monthly_usd"])
    assert (
        builder.put(f"/api/v1/agents/{agent_id}/spend-cap", {"monthly_usd": "5"}, format="json").status_code
        == 403
    )
    capped = admin.put(f"/api/v1/agents/{agent_id}/spend-cap", {"monthly_usd": "5"}, format="json")
    assert capped.json() == {"monthly_usd": "5.00"}
    assert bob_client.get(f"/api/v1/agents/{agent_id}/spend-cap").json() == {"monthly_usd": "5.00"}
    assert alice_client.put(
        f"/api/v1/agents/{agent_id}/spend-cap", {"monthly_usd": None}, format="json"
    ).json() == {"monthly_usd": None}
    actions = list(
        AuditEvent.objects.filter(tenant=world.tenant_a, action__endswith="spend_cap_set")
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert actions == ["billing.spend_cap_set", "agent.spend_cap_set", "agent.spend_cap_set"]


def test_billing_is_for_owners_and_owners_admin_keys(world, alice_client, bob_client, make_key):
    from tenants.services import api_key_create

    # Not configured here: an allowed caller is told so (503), a refused one gets 403.
    response = alice_client.post("/api/v1/billing/checkout", {"plan": "pro"}, format="json")
    assert (response.status_code, response.json()["error"]["code"]) == (503, "billing_not_configured")
    assert bob_client.post("/api/v1/billing/portal").status_code == 403
    admin_user = member(world.tenant_a, Role.ADMIN)
    admin = session_client(admin_user, world.tenant_a)
    assert admin.post("/api/v1/billing/portal").status_code == 403
    _, owners_key = api_key_create(
        tenant=world.tenant_a,
        name="o",
        scopes=["admin"],
        actor=SYSTEM,
        acting_role="owner",
        created_by=world.alice,
    )
    _, admins_key = api_key_create(
        tenant=world.tenant_a,
        name="a",
        scopes=["admin"],
        actor=SYSTEM,
        acting_role="admin",
        created_by=admin_user,
    )
    assert key_client(owners_key).post("/api/v1/billing/portal").status_code == 503
    assert key_client(admins_key).post("/api/v1/billing/portal").status_code == 403
    subscription = alice_client.get("/api/v1/billing/subscription").json()
    assert (subscription["plan"], subscription["billing_configured"]) == ("enterprise", False)


def test_retention_prunes_finished_runs_older_than_the_plan_keeps(world, alice_client):
    _free(world)  # 7 days
    agent_id = create_agent(alice_client, STEP)
    old, recent, running = (
        alice_client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {}}, format="json").json()["id"]
        for _ in range(3)
    )
    Run.objects.filter(pk__in=[old, recent]).update(status=Run.Status.SUCCEEDED)
    Run.objects.filter(pk__in=[old, running]).update(created_at=timezone.now() - timedelta(days=8))
    StepRun.objects.create(
        tenant=world.tenant_a,
        run_id=old,
        key="s",
        step_id="s",
        step_type="transform",
        attempt=1,
        status="succeeded",
        started_at=timezone.now(),
    )

    totals = retention_prune()

    assert (totals["runs"], totals["steps"]) == (1, 1)
    pruned = AuditEvent.objects.get(tenant=world.tenant_a, action="runs.pruned")
    assert (pruned.changes["after"]["runs"], pruned.changes["after"]["retention_days"]) == (1, 7)
    assert set(Run.objects.filter(tenant=world.tenant_a).values_list("pk", flat=True)) == {
        Run.objects.get(pk=recent).pk,
        Run.objects.get(pk=running).pk,
    }


def test_plan_set_command(world):
    out = io.StringIO()
    call_command(
        "plan_set", "tenant-a", "enterprise", "--limit", "runs=5", "--limit", "agents=unlimited", stdout=out
    )
    assert "Enterprise" in out.getvalue()
    sub = Subscription.objects.get(tenant=world.tenant_a)
    assert (sub.plan, sub.overrides) == ("enterprise", {"runs": "5", "agents": None})
    with pytest.raises(CommandError, match="unknown limit 'bogus'"):
        call_command("plan_set", "tenant-a", "enterprise", "--limit", "bogus=1")
    with pytest.raises(CommandError, match="Only Enterprise"):
        call_command("plan_set", "tenant-a", "pro", "--limit", "runs=1")
    with pytest.raises(CommandError, match="No tenant"):
        call_command("plan_set", "nope", "pro")
    shown = io.StringIO()
    call_command("plan_set", "tenant-a", "--show", stdout=shown)
    assert '"limit": 5' in shown.getvalue()
