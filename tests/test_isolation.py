"""Walks every registered API route as tenant B against tenant A's object ids.

New routes are covered automatically: any route with a ``pk`` is requested with each of A's ids and
every method it answers, as B's owner (session) and as B's all-scopes API key; anything but 404/403,
or a body mentioning A's id, fails.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from tenants.audit import Actor
from tenants.models import ApiKey, AuditEvent, Invitation, Membership
from tenants.services import api_key_create, invitation_create
from tests.conftest import key_client, session_client

pytestmark = pytest.mark.django_db

GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def _api_routes() -> Iterator[tuple[str, URLPattern]]:
    def walk(patterns, prefix: str) -> Iterator[tuple[str, URLPattern]]:
        for pattern in patterns:
            text = prefix + str(pattern.pattern).lstrip("^").rstrip("$")
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, text)
            elif text.startswith("api/v1/"):
                yield text.replace("/?", "/").replace("\\", ""), pattern

    yield from walk(get_resolver().url_patterns, "")


def _methods(pattern: URLPattern) -> list[str]:
    callback = pattern.callback
    actions = getattr(callback, "actions", None)
    if actions:
        return [m.upper() for m in actions]
    view_class = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
    return [m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m)]


@pytest.fixture
def a_ids(world) -> dict[str, str]:
    """One object of every kind in tenant A."""
    key, _ = api_key_create(
        tenant=world.tenant_a,
        name="a-key",
        scopes=["read"],
        actor=Actor.system("t"),
        acting_role=None,
        created_by=None,
    )
    invitation, _ = invitation_create(
        tenant=world.tenant_a,
        email="new@a.example",
        role="viewer",
        actor=Actor.system("t"),
        acting_role="owner",
        invited_by=None,
    )
    from agents.runs.services import run_start
    from agents.workflows.services import agent_create, version_publish

    agent = agent_create(
        tenant=world.tenant_a,
        name="a-agent",
        description="",
        actor=Actor.system("t"),
        created_by=None,
        definition={"steps": [{"id": "s", "type": "transform", "value": 1}]},
    )
    version_publish(version=agent.versions.get(), actor=Actor.system("t"))
    agent.refresh_from_db()
    run, _ = run_start(agent=agent, input={}, actor=Actor.system("t"))
    from agents.workflows.variables import variable_create

    variable = variable_create(
        tenant=world.tenant_a, name="a_var", value="secret-ish", description="", actor=Actor.system("t")
    )
    from connectors.services import connector_create

    connector = connector_create(
        tenant=world.tenant_a,
        name="a-conn",
        kind="http",
        actor=Actor.system("t"),
        created_by=None,
        config={"base_url": "https://a.example"},
        secrets={},
    )
    from agents.triggers.services import trigger_create

    trigger, _ = trigger_create(
        agent=agent,
        name="a-hook",
        kind="webhook",
        config={},
        input_mapping=None,
        enabled=True,
        actor=Actor.system("t"),
        created_by=None,
    )
    from agents.prompts.services import prompt_create, prompt_version_create

    prompt = prompt_create(
        tenant=world.tenant_a, name="a-prompt", description="", actor=Actor.system("t"), created_by=None
    )
    prompt_version_create(prompt=prompt, template="hi", actor=Actor.system("t"), author=None)
    from agents.notifications.services import channel_create, notify

    channel, _ = channel_create(
        tenant=world.tenant_a,
        name="a-mail",
        kind="email",
        config={"to": ["ops@a.example"]},
        events=[],
        actor=Actor.system("t"),
    )
    note = notify(tenant_id=world.tenant_a.pk, event="quota.alert", subject="s", body="b", recipients=[])
    assert note is not None
    from agents.generator.services import generation_execute, generation_request

    generation = generation_request(
        tenant=world.tenant_a, description="a support triage agent", actor=Actor.system("t"), created_by=None
    )
    generation_execute(generation.pk)
    return {
        "generation": str(generation.pk),
        "channel": str(channel.pk),
        "notification": str(note.pk),
        "prompt": str(prompt.pk),
        "trigger": str(trigger.pk),
        "connector": str(connector.pk),
        "variable": str(variable.pk),
        "agent": str(agent.pk),
        "run": str(run.pk),
        "membership": str(Membership.objects.get(tenant=world.tenant_a, user=world.bob).pk),
        "api_key": str(key.pk),
        "invitation": str(invitation.pk),
        "audit_event": str(AuditEvent.objects.filter(tenant=world.tenant_a).values_list("pk", flat=True)[0]),
        "tenant": str(world.tenant_a.pk),
    }


@pytest.fixture
def b_clients(world):
    _, token = api_key_create(
        tenant=world.tenant_b,
        name="b-all",
        scopes=["read", "write", "run", "admin", "audit"],
        actor=Actor.system("t"),
        acting_role=None,
        created_by=None,
    )
    return {
        "charlie-session": session_client(world.charlie, world.tenant_b),
        "charlie-key": key_client(token),
    }


def test_the_walk_finds_the_routes_it_must_cover():
    paths = {path for path, _ in _api_routes()}
    assert "api/v1/members/(?P<pk>[0-9a-fA-F-]{36})/" in paths
    assert "api/v1/audit-events/export/" in paths
    assert len([p for p in paths if "(?P<pk>" in p]) >= 10
    assert "api/v1/runs/(?P<pk>[0-9a-fA-F-]{36})/cancel/" in paths


def test_tenant_b_gets_404_or_403_on_every_object_route_with_a_ids(world, a_ids, b_clients):
    checked = 0
    for path, pattern in _api_routes():
        if "(?P<pk>" not in path:
            continue
        for object_id in a_ids.values():
            url = "/" + GROUP.sub(object_id, path)
            for method in _methods(pattern):
                for who, client in b_clients.items():
                    response = client.generic(method, url, "{}", content_type="application/json")
                    assert response.status_code in (403, 404), (
                        f"{who} {method} {url} -> {response.status_code}"
                    )
                    assert object_id not in response.content.decode(), f"{who} {method} {url} leaked the id"
                    checked += 1
    assert checked >= 4 * len(a_ids) * 2
    # Nothing of A changed.
    assert Membership.objects.filter(tenant=world.tenant_a).count() == 2
    assert not ApiKey.objects.filter(tenant=world.tenant_a, revoked_at__isnull=False).exists()
    assert not Invitation.objects.filter(tenant=world.tenant_a, revoked_at__isnull=False).exists()
    from agents.models import Agent, Run

    assert Run.objects.filter(tenant=world.tenant_a).count() == 1  # no re-run was started
    assert Run.objects.get(tenant=world.tenant_a).status == "queued"  # not cancelled
    assert Agent.objects.get(tenant=world.tenant_a).archived_at is None
    from connectors.models import Connector

    assert Connector.objects.filter(tenant=world.tenant_a, last_tested_at__isnull=True).count() == 1
    from agents.models import Trigger

    assert Trigger.objects.get(tenant=world.tenant_a).enabled is True


def test_tenant_b_lists_never_contain_a_objects(world, a_ids, b_clients):
    for path, pattern in _api_routes():
        if "(?P<" in path or "GET" not in _methods(pattern):
            continue
        for who, client in b_clients.items():
            response = client.get("/" + path)
            raw = b"".join(response.streaming_content) if response.streaming else response.content
            body = raw.decode()
            for kind, object_id in a_ids.items():
                assert object_id not in body, f"{who} GET /{path} shows A's {kind}"


# Tenant-owned models the sweep reaches through another object's routes (or that no route exposes),
# and where. A new tenant-owned model fails the test below until it is covered by ``a_ids`` or listed here.
REACHED_THROUGH = {
    "tenants.auditevent": "a_ids (audit_event)",
    "tenants.membership": "a_ids (membership)",
    "tenants.invitation": "a_ids (invitation)",
    "tenants.apikey": "a_ids (api_key)",
    "agents.agent": "a_ids (agent)",
    "agents.run": "a_ids (run)",
    "agents.variable": "a_ids (variable)",
    "agents.trigger": "a_ids (trigger)",
    "agents.prompt": "a_ids (prompt)",
    "agents.notificationchannel": "a_ids (channel)",
    "agents.notification": "a_ids (notification)",
    "connectors.connector": "a_ids (connector)",
    "agents.generation": "a_ids (generation)",
    "agents.agentversion": "/agents/{id}/versions/...",
    "agents.agentwatcher": "/agents/{id}/watchers",
    "agents.steprun": "/runs/{id}",
    "agents.triggerevent": "/triggers/{id}/events",
    "agents.promptversion": "/prompts/{id}/versions/...",
    "agents.promptlabel": "/prompts/{id}/labels...",
    "agents.promptlabelmove": "/prompts/{id}/labels...",
    "agents.notificationdelivery": "/notifications/{id}",
    "billing.agentspendcap": "/agents/{id}/spend-cap",
    "billing.subscription": "the request's own tenant only (/billing/...)",
    "billing.usagecounter": "the request's own tenant only (/usage)",
    "billing.meterreport": "no route (sent to Stripe)",
    "connectors.tenantkey": "no route (never leaves the database)",
    "connectors.networkallowance": "no route (operators set it with manage.py tenant_network_allow)",
    "tenants.staffaccess": "no route (the console; the tenant sees it as staff.access audit events)",
}


def test_every_tenant_owned_model_is_covered_by_the_sweep():
    from django.apps import apps

    from tenants.models import Tenant

    owned = {
        model._meta.label_lower
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if field.is_relation and field.related_model is Tenant
    }
    assert owned - set(REACHED_THROUGH) == set(), "cover the new tenant-owned model in the isolation sweep"
    assert set(REACHED_THROUGH) - owned == set(), "a listed model no longer exists"
