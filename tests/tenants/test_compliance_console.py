"""The compliance console: every agent-side object visible read-only; a tenant's data opens only for the
Compliance group, with a reason, and the tenant sees the access in its audit log and is notified."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group
from django.test import Client

from agents.notifications.models import Notification
from agents.runs.execution import run_execute
from agents.workflows.models import AgentVersion
from tenants.audit import audit_verify_tenant
from tenants.models import AuditEvent, StaffAccess
from tests.agents.helpers import create_agent
from tests.factories import make_user

pytestmark = pytest.mark.django_db

SECRET_INPUT = "customer-said-something-private-4242"
AGENT = {
    "inputs": {"type": "object", "properties": {"text": {"type": "string"}}},
    "steps": [{"id": "echo", "type": "transform", "value": "{{ input.text }} (seen)"}],
}


def _staff(compliance: bool) -> Client:
    user = make_user(email=f"staff-{'c' if compliance else 'n'}@falcon.example", is_staff=True)
    group = Group.objects.get(name="Compliance")
    user.groups.add(group)  # the group's view rights; membership is what opens payloads…
    if not compliance:
        # …so the other staff member gets the same view rights without the group.
        user.groups.remove(group)
        user.user_permissions.set(group.permissions.all())
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def run_id(world, alice_client) -> str:
    agent_id = create_agent(alice_client, AGENT, name="echo")
    created = alice_client.post(
        f"/api/v1/agents/{agent_id}/runs", {"input": {"text": SECRET_INPUT}}, format="json"
    )
    run_execute(created.json()["id"])
    return str(created.json()["id"])


def test_compliance_staff_open_a_run_with_a_reason_and_the_tenant_sees_it(
    world, alice_client, run_id, django_capture_on_commit_callbacks
):
    staff = _staff(compliance=True)
    url = f"/admin/agents/run/{run_id}/change/"
    asked = staff.get(url)
    assert asked.status_code == 200
    assert "Reason (a ticket id or a sentence)" in asked.content.decode()
    assert SECRET_INPUT not in asked.content.decode()
    refused = staff.post(url, {"reason": " "})
    assert refused.status_code == 400
    assert "Say why you open it" in refused.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        assert staff.post(url, {"reason": "TICKET-42: the customer asked why it failed"}).status_code == 302
    page = staff.get(url).content.decode()
    assert SECRET_INPUT in page  # the run's input and the step's
    assert "in the tenant&#x27;s audit log" in page

    event = AuditEvent.objects.get(tenant=world.tenant_a, action="staff.access")
    assert event.target_type == "run"
    assert event.target_id == run_id
    assert event.changes["after"]["reason"] == "TICKET-42: the customer asked why it failed"
    assert event.actor_label == "staff-c@falcon.example (platform staff)"
    assert audit_verify_tenant(world.tenant_a) is None
    # The tenant's owner sees it through the API and was notified.
    listed = alice_client.get("/api/v1/audit-events/?action=staff.access").json()
    assert [e["target_id"] for e in listed["results"]] == [run_id]
    notice = Notification.objects.get(tenant=world.tenant_a, event="staff.access")
    assert "TICKET-42" in notice.body
    assert "alice@a.example" in {d.recipient for d in notice.deliveries.all()}
    # Within the grant, the same page opens again without a new event.
    staff.get(url)
    assert AuditEvent.objects.filter(action="staff.access").count() == 1


def test_staff_without_the_group_see_no_payload_and_leave_no_trace(world, run_id):
    staff = _staff(compliance=False)
    page = staff.get(f"/admin/agents/run/{run_id}/change/")
    assert page.status_code == 200
    text = page.content.decode()
    assert SECRET_INPUT not in text
    assert "only the Compliance group may open them" in text
    assert (
        staff.post(f"/admin/agents/run/{run_id}/change/", {"reason": "curious about it"}).status_code == 403
    )
    assert not StaffAccess.objects.exists()
    assert not AuditEvent.objects.filter(action="staff.access").exists()


def test_a_version_opens_with_its_diff_to_the_previous(world, alice_client):
    agent_id = create_agent(alice_client, AGENT, name="echo")
    second = {**AGENT, "output": "{{ steps.echo.output }}!"}
    alice_client.post(f"/api/v1/agents/{agent_id}/versions", {"definition": second}, format="json")
    version = AgentVersion.objects.get(agent_id=agent_id, number=2)
    staff = _staff(compliance=True)
    url = f"/admin/agents/agentversion/{version.pk}/change/"
    staff.post(url, {"reason": "SEC-7 review of a change"})
    page = html.unescape(staff.get(url).content.decode())
    assert "Diff to the previous version" in page
    assert '+  "output": "{{ steps.echo.output }}!"' in page
    assert AuditEvent.objects.filter(
        tenant=world.tenant_a, action="staff.access", target_type="agent_version"
    ).exists()


CONSOLE_MODELS = [
    "agents/agent", "agents/agentversion", "agents/run", "agents/prompt", "agents/promptversion",
    "agents/trigger", "agents/notificationchannel", "agents/notification", "agents/variable",
    "connectors/connector", "billing/usagecounter", "tenants/auditevent", "tenants/tenant",
]  # fmt: skip


@pytest.mark.parametrize("path", CONSOLE_MODELS)
def test_every_console_list_filters_and_finds_by_id(world, run_id, path):
    staff = _staff(compliance=True)
    listing = staff.get(f"/admin/{path}/")
    assert listing.status_code == 200, path
    assert staff.get(f"/admin/{path}/?q={run_id}").status_code == 200
    assert staff.get(f"/admin/{path}/?q=not-an-id").status_code == 200
    assert "addlink" not in listing.content.decode()


def test_the_console_has_no_add_change_or_delete_outside_the_operator_actions(world):
    writable = {"ModelPrice", "User"}  # documented operator actions
    for model, model_admin in admin.site._registry.items():
        if model.__name__ in writable:
            continue
        request: Any = type("R", (), {"user": make_user(is_staff=True, is_superuser=True)})()
        assert not model_admin.has_add_permission(request), model.__name__
        assert not model_admin.has_change_permission(request), model.__name__
        assert not model_admin.has_delete_permission(request), model.__name__


def _superuser() -> tuple[Client, Any]:
    user = make_user(email="operator@falcon.example", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(user)
    return client, user


def test_model_price_edits_are_on_the_platform_chain(world):
    from agents.llm.models import ModelPrice
    from tenants.audit import audit_verify_platform

    client, _ = _superuser()
    added = client.post(
        "/admin/agents/modelprice/add/",
        {"model": "ollama/llama3.2", "input_usd_per_mtok": "0.1", "output_usd_per_mtok": "0.2"},
    )
    assert added.status_code == 302
    price = ModelPrice.objects.get(model="ollama/llama3.2")
    client.post(
        f"/admin/agents/modelprice/{price.pk}/change/",
        {"model": "ollama/llama3.2", "input_usd_per_mtok": "0.5", "output_usd_per_mtok": "0.2"},
    )
    client.post(f"/admin/agents/modelprice/{price.pk}/delete/", {"post": "yes"})
    events = list(AuditEvent.objects.filter(tenant__isnull=True).order_by("seq"))
    assert [e.action for e in events] == ["model_price.created", "model_price.changed", "model_price.deleted"]
    assert events[1].changes["before"]["input_usd_per_mtok"] == "0.100000"
    assert events[1].changes["after"]["input_usd_per_mtok"] == "0.5"
    assert events[0].actor_label == "operator@falcon.example (platform staff)"
    assert audit_verify_platform() is None


def test_deactivating_a_person_is_audited_for_the_platform_and_their_tenants(world):
    client, _ = _superuser()
    bob = world.bob
    form = {"email": bob.email, "name": "Bob", "is_staff": "", "is_superuser": "", "groups": []}
    changed = client.post(f"/admin/tenants/user/{bob.pk}/change/", {**form, "is_active": ""})
    assert changed.status_code == 302, changed.content.decode()[:500]
    bob.refresh_from_db()
    assert bob.is_active is False
    platform = AuditEvent.objects.get(tenant__isnull=True, action="user.changed")
    assert platform.changes["after"]["is_active"] is False
    assert platform.changes["before"]["is_active"] is True
    tenant_event = AuditEvent.objects.get(tenant=world.tenant_a, action="member.deactivated")
    assert tenant_event.changes["after"]["email"] == bob.email
    assert client.get(f"/admin/tenants/user/{bob.pk}/delete/").status_code == 403


def test_operator_actions_on_a_tenant_go_through_the_services_and_are_audited(world, settings):
    settings.FALCON_ALLOWED_PRIVATE_NETWORKS = ["10.0.0.0/8"]
    client, _ = _superuser()
    tenant = world.tenant_a
    page = client.get(f"/admin/tenants/tenant/{tenant.pk}/change/").content.decode()
    assert "Set the plan" in page
    assert "Allow a private network" in page
    assert client.post(f"/admin/tenants/tenant/{tenant.pk}/plan/", {"plan": "team"}).status_code == 302
    assert alice_plan(world) == "team"
    refused = client.post(
        f"/admin/tenants/tenant/{tenant.pk}/network/", {"cidr": "192.168.0.0/16", "reason": "VPN"}
    )
    assert refused.status_code == 400
    assert "FALCON_ALLOWED_PRIVATE_NETWORKS" in refused.content.decode()
    allowed = client.post(
        f"/admin/tenants/tenant/{tenant.pk}/network/", {"cidr": "10.1.0.0/16", "reason": "their VPN"}
    )
    assert allowed.status_code == 302
    actions = set(AuditEvent.objects.filter(tenant=tenant).values_list("action", flat=True))
    assert {"billing.plan_set", "network.allowed"} <= actions
    event = AuditEvent.objects.get(tenant=tenant, action="network.allowed")
    assert event.actor_label == "operator@falcon.example (platform staff)"
    # Compliance staff read the console but may not act.
    staff = _staff(compliance=True)
    assert staff.get(f"/admin/tenants/tenant/{tenant.pk}/plan/").status_code == 403


def alice_plan(world: Any) -> str:
    from billing.models import Subscription

    return Subscription.objects.get(tenant=world.tenant_a).plan
