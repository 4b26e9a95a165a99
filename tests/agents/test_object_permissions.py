"""Per-object rights through the API: role x explicit grant (or granted-only) x action, on agents, prompts
and the runs of agents."""

from __future__ import annotations

import pytest

from tenants.models import AuditEvent, Membership
from tenants.permissions import Role
from tests.agents.helpers import create_agent
from tests.conftest import member, session_client

pytestmark = pytest.mark.django_db

STEP = {"steps": [{"id": "s", "type": "transform", "value": 1}]}


def _attempt(client, agent_id: str, action: str) -> int:
    if action == "view":
        return client.get(f"/api/v1/agents/{agent_id}").status_code
    if action == "edit":
        return client.patch(f"/api/v1/agents/{agent_id}", {"description": "x"}, format="json").status_code
    if action == "publish":
        return client.post(f"/api/v1/agents/{agent_id}/versions/1/publish").status_code
    return client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {}}, format="json").status_code


OK = {"view": 200, "edit": 200, "publish": 200, "run": 202}


@pytest.mark.parametrize(
    ("role", "granted_only", "rights_on_x", "expect_x", "expect_y"),
    [
        # role defaults, no grant
        (Role.BUILDER, False, None, {"view", "edit", "publish", "run"}, {"view", "edit", "publish", "run"}),
        (Role.OPERATOR, False, None, {"view", "run"}, {"view", "run"}),
        (Role.VIEWER, False, None, {"view"}, {"view"}),
        # a builder who may edit one agent but not publish (or run) it
        (Role.BUILDER, False, ["view", "edit"], {"view", "edit"}, {"view", "edit", "publish", "run"}),
        # an operator who may run only the agents granted to them
        (Role.OPERATOR, True, ["view", "run"], {"view", "run"}, set()),
        # a viewer granted the right to run one agent
        (Role.VIEWER, False, ["view", "run"], {"view", "run"}, {"view"}),
        # an explicit empty set hides the agent from that member
        (Role.BUILDER, False, [], set(), {"view", "edit", "publish", "run"}),
    ],
)
def test_role_by_grant_by_action(world, alice_client, role, granted_only, rights_on_x, expect_x, expect_y):
    x = create_agent(alice_client, STEP, name="x")
    y = create_agent(alice_client, STEP, name="y")
    person = member(world.tenant_a, role)
    membership = Membership.objects.get(tenant=world.tenant_a, user=person)
    if granted_only:
        assert (
            alice_client.patch(
                f"/api/v1/members/{membership.pk}", {"granted_only": True}, format="json"
            ).status_code
            == 200
        )
    if rights_on_x is not None:
        response = alice_client.put(
            f"/api/v1/agents/{x}/permissions",
            {"member": str(membership.pk), "rights": rights_on_x},
            format="json",
        )
        assert response.status_code == 200, response.json()
    client = session_client(person, world.tenant_a)

    for agent_id, expected in ((x, expect_x), (y, expect_y)):
        for action in ("view", "edit", "publish", "run"):
            status = _attempt(client, agent_id, action)
            if action in expected:
                assert status == OK[action], (role, action, agent_id == x, status)
            elif "view" in expected:
                assert status == 403, (role, action, agent_id == x, status)  # visible, not allowed
            else:
                # Not visible: reading it is a 404 like another tenant's; an action the role lacks
                # everywhere is refused (403) before any lookup.
                assert status in ((404,) if action == "view" else (403, 404)), (role, action, status)
    listed = {a["name"] for a in client.get("/api/v1/agents/").json()["results"]}
    assert listed == {name for name, exp in (("x", expect_x), ("y", expect_y)) if "view" in exp}


def test_runs_follow_the_rights_on_their_agent(world, alice_client):
    x = create_agent(alice_client, STEP, name="x")
    y = create_agent(alice_client, STEP, name="y")
    run_x = alice_client.post(f"/api/v1/agents/{x}/runs", {"input": {}}, format="json").json()["id"]
    run_y = alice_client.post(f"/api/v1/agents/{y}/runs", {"input": {}}, format="json").json()["id"]
    person = member(world.tenant_a, Role.OPERATOR)
    membership = Membership.objects.get(tenant=world.tenant_a, user=person)
    alice_client.patch(f"/api/v1/members/{membership.pk}", {"granted_only": True}, format="json")
    alice_client.put(
        f"/api/v1/agents/{x}/permissions", {"member": str(membership.pk), "rights": ["view"]}, format="json"
    )
    client = session_client(person, world.tenant_a)
    assert [r["id"] for r in client.get("/api/v1/runs/").json()["results"]] == [run_x]
    assert client.get(f"/api/v1/runs/{run_y}").status_code == 404
    assert client.post(f"/api/v1/runs/{run_x}/cancel").status_code == 403  # view, but no run right


def test_who_may_do_what_is_answered_and_changes_are_audited(world, alice_client, bob_client):
    x = create_agent(alice_client, STEP, name="x")
    builder = member(world.tenant_a, Role.BUILDER, email="bea@a.example")
    membership = Membership.objects.get(tenant=world.tenant_a, user=builder)
    url = f"/api/v1/agents/{x}/permissions"
    # Only owners and admins change rights; anyone who sees the agent may read them.
    assert (
        bob_client.put(url, {"member": str(membership.pk), "rights": ["view"]}, format="json").status_code
        == 403
    )
    owner = Membership.objects.get(tenant=world.tenant_a, user=world.alice)
    assert alice_client.put(url, {"member": str(owner.pk), "rights": []}, format="json").status_code == 400
    assert (
        alice_client.put(url, {"member": str(membership.pk), "rights": ["fly"]}, format="json").status_code
        == 400
    )
    other_tenant = Membership.objects.get(tenant=world.tenant_b, user=world.charlie)
    assert (
        alice_client.put(url, {"member": str(other_tenant.pk), "rights": []}, format="json").status_code
        == 404
    )
    alice_client.put(url, {"member": str(membership.pk), "rights": ["view", "edit"]}, format="json")

    listing = {row["email"]: row for row in bob_client.get(url).json()}
    assert listing["bea@a.example"]["explicit"] == ["edit", "view"]
    assert listing["bea@a.example"]["effective"] == ["view", "edit"]
    assert listing["alice@a.example"]["effective"] == ["view", "edit", "publish", "run"]
    assert listing["bob@a.example"] == {**listing["bob@a.example"], "explicit": None, "effective": ["view"]}

    alice_client.put(url, {"member": str(membership.pk), "rights": None}, format="json")
    changes = [
        (e.changes["before"]["rights"], e.changes["after"]["rights"])
        for e in AuditEvent.objects.filter(tenant=world.tenant_a, action="agent.rights_changed").order_by(
            "seq"
        )
    ]
    assert changes == [(None, ["edit", "view"]), (["edit", "view"], None)]


def test_prompt_rights(world, alice_client):
    created = alice_client.post(
        "/api/v1/prompts/", {"name": "p", "version": {"template": "hi"}}, format="json"
    ).json()
    builder = member(world.tenant_a, Role.BUILDER)
    membership = Membership.objects.get(tenant=world.tenant_a, user=builder)
    client = session_client(builder, world.tenant_a)
    versions = f"/api/v1/prompts/{created['id']}/versions"
    assert client.post(versions, {"template": "v2"}, format="json").status_code == 201
    alice_client.put(
        f"/api/v1/prompts/{created['id']}/permissions",
        {"member": str(membership.pk), "rights": ["view"]},
        format="json",
    )
    assert client.post(versions, {"template": "v3"}, format="json").status_code == 403
    assert client.get(versions).status_code == 200
    # A granted publish right lets this builder approve on this prompt only.
    alice_client.put(
        f"/api/v1/prompts/{created['id']}/permissions",
        {"member": str(membership.pk), "rights": ["view", "edit", "publish"]},
        format="json",
    )
    assert client.post(f"{versions}/2/submit").status_code == 200
    assert client.post(f"{versions}/2/approve", {}, format="json").status_code == 200


def test_triggers_follow_the_rights_on_their_agent(world, alice_client, client):
    """Regression: triggers once skipped per-object rights, so a builder hidden from an agent created a
    webhook trigger for it, fired it and read the output."""
    hidden = create_agent(alice_client, STEP, name="hidden")
    seen = create_agent(alice_client, STEP, name="seen")
    triggers = {
        agent_id: alice_client.post(
            "/api/v1/triggers/",
            {"name": f"hook-{agent_id[:8]}", "agent": agent_id, "kind": "webhook"},
            format="json",
        ).json()["id"]
        for agent_id in (hidden, seen)
    }
    person = member(world.tenant_a, Role.BUILDER)
    membership = Membership.objects.get(tenant=world.tenant_a, user=person)
    for agent_id, rights in ((hidden, []), (seen, ["view"])):
        alice_client.put(
            f"/api/v1/agents/{agent_id}/permissions",
            {"member": str(membership.pk), "rights": rights},
            format="json",
        )
    builder = session_client(person, world.tenant_a)

    listed = [t["id"] for t in builder.get("/api/v1/triggers/").json()["results"]]
    assert listed == [triggers[seen]]
    assert builder.get(f"/api/v1/triggers/{triggers[hidden]}").status_code == 404
    assert builder.get(f"/api/v1/triggers/{triggers[hidden]}/events").status_code == 404
    assert builder.post(f"/api/v1/triggers/{triggers[hidden]}/rotate-secret").status_code == 404
    assert builder.get(f"/api/v1/triggers/{triggers[seen]}").status_code == 200
    assert builder.post(f"/api/v1/triggers/{triggers[seen]}/disable").status_code == 403  # view, not edit
    created_on_hidden = builder.post(
        "/api/v1/triggers/", {"name": "mine", "agent": hidden, "kind": "webhook"}, format="json"
    )
    assert created_on_hidden.status_code == 400
    assert created_on_hidden.json()["error"]["code"] == "not_found"
    created_on_seen = builder.post(
        "/api/v1/triggers/", {"name": "mine", "agent": seen, "kind": "webhook"}, format="json"
    )
    assert created_on_seen.status_code == 403
    assert not AuditEvent.objects.filter(
        action="trigger.created", actor_label__contains=person.email
    ).exists()


def test_every_path_to_an_agent_respects_its_rights(world, alice_client):
    """Tools naming agents, prompt references, watchers and notifications follow the object rights."""
    from agents.notifications.services import notify

    secret = create_agent(alice_client, STEP, name="secret")
    seen = create_agent(alice_client, STEP, name="seen")
    prompt = alice_client.post(
        "/api/v1/prompts/", {"name": "hidden-prompt", "version": {"template": "x"}}, format="json"
    ).json()
    person = member(world.tenant_a, Role.BUILDER)
    membership = Membership.objects.get(tenant=world.tenant_a, user=person)
    for path, rights in (
        (f"/api/v1/agents/{secret}/permissions", []),
        (f"/api/v1/agents/{seen}/permissions", ["view"]),
        (f"/api/v1/prompts/{prompt['id']}/permissions", []),
    ):
        assert (
            alice_client.put(
                path, {"member": str(membership.pk), "rights": rights}, format="json"
            ).status_code
            == 200
        )
    builder = session_client(person, world.tenant_a)

    def save(tools=None, prompt_ref=None):
        step = {
            "id": "a",
            "type": "agent",
            "model": "sandbox/echo",
            "prompt": prompt_ref or "go",
            "tools": tools or [],
        }
        return builder.post(
            "/api/v1/agents/", {"name": "mine", "definition": {"steps": [step]}}, format="json"
        )

    hidden_tool = save(tools=[{"type": "agent", "agent": "secret"}])
    assert hidden_tool.status_code == 400
    assert "no agent named 'secret'" in str(hidden_tool.json()["error"]["fields"])
    not_runnable = save(tools=[{"type": "agent", "agent": "seen"}])
    assert not_runnable.status_code == 400
    assert "may not run" in str(not_runnable.json()["error"]["fields"])
    hidden_prompt = save(prompt_ref={"name": "hidden-prompt"})
    assert hidden_prompt.status_code == 400
    assert "no prompt named 'hidden-prompt'" in str(hidden_prompt.json()["error"]["fields"])

    # Watchers must be able to see the agent their failure mails are about.
    refused = alice_client.put(
        f"/api/v1/agents/{secret}/watchers", {"members": [str(person.pk)]}, format="json"
    )
    assert refused.status_code == 400
    assert person.email in refused.json()["error"]["message"]

    # Notifications about an agent are listed to those who may see it.
    notify(
        tenant_id=world.tenant_a.pk,
        event="run.failed",
        subject="secret failed",
        body="b",
        recipients=[],
        agent_id=secret,
    )
    notify(tenant_id=world.tenant_a.pk, event="quota.alert", subject="tenant-wide", body="b", recipients=[])
    listed = {n["subject"] for n in builder.get("/api/v1/notifications/").json()["results"]}
    assert listed == {"tenant-wide"}
    assert {n["subject"] for n in alice_client.get("/api/v1/notifications/").json()["results"]} == {
        "secret failed",
        "tenant-wide",
    }
