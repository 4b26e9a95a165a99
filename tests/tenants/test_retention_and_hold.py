"""A tenant's own retention within its plan (owners, audited), and an operator's legal hold under which
the retention task deletes nothing of that tenant only."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from agents.runs.models import Run
from billing.services import retention_prune
from tenants.models import AuditEvent
from tests.agents.helpers import create_agent
from tests.conftest import key_client

pytestmark = pytest.mark.django_db

STEP = {"steps": [{"id": "a", "type": "transform", "value": "1"}]}


def _finished_run(client, agent_id: str, days_old: int) -> str:
    run_id = client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {}}, format="json").json()["id"]
    Run.objects.filter(pk=run_id).update(
        status=Run.Status.SUCCEEDED, created_at=timezone.now() - timedelta(days=days_old)
    )
    return str(run_id)


def test_owners_choose_a_shorter_retention_within_the_plan(world, alice_client, bob_client, make_key):
    too_long = alice_client.patch("/api/v1/tenant", {"retention_days": 4000}, format="json")
    assert too_long.status_code == 400
    assert "retention_days" in too_long.json()["error"]["fields"]
    assert bob_client.patch("/api/v1/tenant", {"retention_days": 10}, format="json").status_code == 403
    _, token = make_key(world.tenant_a, ["write"])
    assert key_client(token).patch("/api/v1/tenant", {"retention_days": 10}, format="json").status_code == 403
    chosen = alice_client.patch("/api/v1/tenant", {"retention_days": 10}, format="json")
    assert chosen.status_code == 200
    assert chosen.json()["retention_days"] == 10
    event = AuditEvent.objects.get(tenant=world.tenant_a, action="tenant.updated")
    assert event.changes["after"] == {"retention_days": 10}

    agent_id = create_agent(alice_client, STEP)
    old, kept = _finished_run(alice_client, agent_id, 11), _finished_run(alice_client, agent_id, 9)
    retention_prune()
    remaining = set(Run.objects.filter(tenant=world.tenant_a).values_list("pk", flat=True))
    assert {str(r) for r in remaining} == {kept}
    assert old not in {str(r) for r in remaining}
    assert (
        alice_client.patch("/api/v1/tenant", {"retention_days": None}, format="json").json()["retention_days"]
        is None
    )


def test_a_legal_hold_stops_retention_for_that_tenant_only(world, alice_client, charlie_client):
    for client in (alice_client, charlie_client):
        client.patch("/api/v1/tenant", {"retention_days": 5}, format="json")
    a_old = _finished_run(alice_client, create_agent(alice_client, STEP), 30)
    b_old = _finished_run(charlie_client, create_agent(charlie_client, STEP), 30)
    out = io.StringIO()
    call_command(
        "tenant_legal_hold", "tenant-a", "--reason", "Matter 2026-114 (regulator inquiry)", stdout=out
    )
    assert "on legal hold since" in out.getvalue()
    shown = alice_client.get("/api/v1/tenant").json()["legal_hold"]
    assert shown["reason"] == "Matter 2026-114 (regulator inquiry)"
    assert AuditEvent.objects.filter(tenant=world.tenant_a, action="tenant.legal_hold_placed").exists()

    retention_prune()
    assert Run.objects.filter(pk=a_old).exists()  # held
    assert not Run.objects.filter(pk=b_old).exists()  # not held: pruned as before

    call_command("tenant_legal_hold", "tenant-a", "--lift", stdout=io.StringIO())
    assert alice_client.get("/api/v1/tenant").json()["legal_hold"] is None
    retention_prune()
    assert not Run.objects.filter(pk=a_old).exists()
    assert AuditEvent.objects.filter(tenant=world.tenant_a, action="tenant.legal_hold_lifted").exists()


def test_a_hold_needs_a_reason(world):
    with pytest.raises(CommandError, match="Say why"):
        call_command("tenant_legal_hold", "tenant-a", stdout=io.StringIO())
