"""Tenant-supplied LLM base URLs go through the network policy: on save and on every call, with one
resolution per call (no rebinding between check and connect). Base URLs from the environment stay trusted.

Regression: an ``ollama`` connector reached 0.0.0.0, an ``openai`` one 169.254.169.254, and
``127.0.0.1:<falcon>`` echoed the platform's own pages into the connector test's result.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

import pytest

from connectors import netguard
from connectors.models import NetworkAllowance

pytestmark = pytest.mark.django_db


def _create(client, name: str, kind: str, base_url: str):
    config = {"base_url": base_url}
    secrets = {} if kind == "ollama" else {"api_key": "sk-tenant-0123456789abcdef"}
    return client.post(
        "/api/v1/connectors/",
        {"name": name, "kind": kind, "config": config, "secrets": secrets},
        format="json",
    )


@pytest.fixture
def fake_dns(monkeypatch):
    """Names the tests control: ``answers[name]`` is a list of addresses handed out one per lookup."""
    answers: dict[str, list[str]] = {}
    real = netguard._system_getaddrinfo

    def resolve(host, port, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in answers:
            address = answers[name].pop(0) if len(answers[name]) > 1 else answers[name][0]
            return real(address, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(netguard, "_system_getaddrinfo", resolve)
    return answers


def test_internal_base_urls_are_refused_on_save(world, alice_client, settings, loopback_allowed):
    web = urlsplit(settings.FALCON_BASE_URL)
    for name, kind, url in (
        ("meta", "openai", "http://169.254.169.254/v1"),
        ("any", "ollama", "http://0.0.0.0:11434"),
        ("self", "openai", f"http://{web.hostname}:{web.port}/v1"),  # the platform's own web server
        ("v6meta", "anthropic", "http://[fd00:ec2::254]/"),
    ):
        response = _create(alice_client, name, kind, url)
        assert response.status_code == 400, (url, response.json())
        assert "config.base_url" in response.json()["error"]["fields"], url
    assert "the platform's own web server" in str(
        _create(alice_client, "s2", "openai", f"http://{web.hostname}:{web.port}/v1").json()
    )


def test_a_base_url_is_checked_again_on_every_call_and_rebinding_fails(world, alice_client, llm, fake_dns):
    """Saved while the name pointed at a public address, called after it moved to loopback: refused,
    and the loopback server never hears of it."""
    port = urlsplit(llm.base).port
    fake_dns["llm.rebind.test"] = ["93.184.216.34", "127.0.0.1"]
    created = _create(alice_client, "rebind", "openai", f"http://llm.rebind.test:{port}/v1")
    assert created.status_code == 201, created.json()
    result = alice_client.post(f"/api/v1/connectors/{created.json()['id']}/test").json()
    assert result["ok"] is False
    assert "loopback" in result["detail"]
    assert llm.received == []


def test_the_sdk_connects_to_the_checked_address(world, alice_client, llm, fake_dns, settings):
    """The provider SDK resolves the name through the policy: a name only the policy can resolve works,
    for a tenant allowed to reach it, which shows the connection went to the checked address."""
    settings.FALCON_ALLOWED_PRIVATE_NETWORKS = ["127.0.0.0/8"]
    NetworkAllowance.objects.create(tenant=world.tenant_a, cidr="127.0.0.0/8")
    port = urlsplit(llm.base).port
    fake_dns["llm.tenant.test"] = ["127.0.0.1"]
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("llm.tenant.test", port)  # outside a guarded call: the system's resolver
    created = _create(alice_client, "own", "openai", f"http://llm.tenant.test:{port}/v1")
    assert created.status_code == 201, created.json()
    result = alice_client.post(f"/api/v1/connectors/{created.json()['id']}/test").json()
    assert result["ok"] is True, result
    assert llm.received[-1].headers["authorization"] == "Bearer sk-tenant-0123456789abcdef"


def test_environment_base_urls_stay_trusted(world, alice_client, llm):
    """The operator's provider base URLs (here the loopback server) need no allowance."""
    agent = alice_client.post(
        "/api/v1/agents/",
        {
            "name": "env",
            "definition": {
                "steps": [{"id": "a", "type": "llm", "model": "openai/gpt-4o-mini", "prompt": "hi"}]
            },
        },
        format="json",
    ).json()
    alice_client.post(f"/api/v1/agents/{agent['id']}/versions/1/publish")
    from agents.runs.execution import run_execute

    run = alice_client.post(f"/api/v1/agents/{agent['id']}/runs", {"input": {}}, format="json").json()
    assert run_execute(run["id"]) == "succeeded"
    assert len(llm.received) == 1


def test_tenant_network_allow_is_audited_and_bounded_by_the_platform(world, settings):
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    from connectors.services import network_policy
    from tenants.models import AuditEvent

    settings.FALCON_ALLOWED_PRIVATE_NETWORKS = ["10.0.0.0/8"]
    with pytest.raises(CommandError, match="not inside FALCON_ALLOWED_PRIVATE_NETWORKS"):
        call_command("tenant_network_allow", world.tenant_a.slug, "192.168.0.0/16", stdout=StringIO())
    out = StringIO()
    call_command("tenant_network_allow", world.tenant_a.slug, "10.20.0.0/16", "--reason", "ERP", stdout=out)
    assert "may reach 10.20.0.0/16" in out.getvalue()
    event = AuditEvent.objects.get(tenant=world.tenant_a, action="network.allowed")
    assert event.changes["after"] == {"cidr": "10.20.0.0/16", "reason": "ERP"}
    import ipaddress

    inside = ipaddress.ip_address("10.20.1.2")
    assert network_policy(world.tenant_a.pk).problem(inside, 443) is None
    assert network_policy(world.tenant_b.pk).problem(inside, 443) == "a private address"  # per tenant
    call_command("tenant_network_allow", world.tenant_a.slug, "10.20.0.0/16", "--remove", stdout=StringIO())
    assert network_policy(world.tenant_a.pk).problem(inside, 443) == "a private address"
    assert AuditEvent.objects.filter(tenant=world.tenant_a, action="network.disallowed").count() == 1
