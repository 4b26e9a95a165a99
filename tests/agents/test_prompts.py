"""The prompt library through the API: review with and without four eyes, protected labels, label moves
that change what the next run uses (and roll back), diff and render."""

from __future__ import annotations

import pytest

from agents.models import Run
from agents.runs.execution import run_execute
from tenants.models import AuditEvent
from tenants.permissions import Role
from tests.agents.helpers import create_agent
from tests.conftest import key_client, member, session_client


def _prompt(client, name: str = "greeting", template: str = "Say hello to {{ who }}", **extra) -> dict:
    response = client.post(
        "/api/v1/prompts/",
        {
            "name": name,
            "description": "how we greet",
            "version": {"template": template, "input_variables": ["who"], "commit_message": "first", **extra},
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    return response.json()


def _version(client, prompt_id: str, template: str, message: str = "") -> int:
    response = client.post(
        f"/api/v1/prompts/{prompt_id}/versions",
        {"template": template, "input_variables": ["who"], "commit_message": message},
        format="json",
    )
    assert response.status_code == 201, response.json()
    return int(response.json()["number"])


def _approve(submitter, approver, prompt_id: str, number: int) -> None:
    base = f"/api/v1/prompts/{prompt_id}/versions/{number}"
    assert submitter.post(f"{base}/submit").status_code == 200
    approved = approver.post(f"{base}/approve", {"comment": "fine"}, format="json")
    assert approved.status_code == 200, approved.json()


@pytest.mark.django_db
def test_review_flow_with_four_eyes_off_and_on(world, alice_client):
    admin = session_client(member(world.tenant_a, Role.ADMIN), world.tenant_a)
    builder = session_client(member(world.tenant_a, Role.BUILDER), world.tenant_a)
    prompt = _prompt(builder)
    base = f"/api/v1/prompts/{prompt['id']}/versions/1"
    assert builder.get(base).json()["status"] == "draft"
    # Only a draft in review can be decided; a builder may submit but not approve.
    assert alice_client.post(f"{base}/approve", {}, format="json").json()["error"]["code"] == "not_in_review"
    assert builder.post(f"{base}/submit").json()["status"] == "in_review"
    assert builder.post(f"{base}/approve", {}, format="json").status_code == 403
    # Four eyes off: an author with the publish right may approve their own version.
    own = _version(alice_client, prompt["id"], "Hi {{ who }}")
    _approve(alice_client, alice_client, prompt["id"], own)

    assert alice_client.patch("/api/v1/tenant", {"prompt_four_eyes": True}, format="json").status_code == 200
    assert admin.patch("/api/v1/tenant", {"prompt_four_eyes": False}, format="json").status_code == 403
    mine = _version(alice_client, prompt["id"], "Hey {{ who }}")
    assert alice_client.post(f"/api/v1/prompts/{prompt['id']}/versions/{mine}/submit").status_code == 200
    refused = alice_client.post(f"/api/v1/prompts/{prompt['id']}/versions/{mine}/approve", {}, format="json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "four_eyes")
    approved = admin.post(
        f"/api/v1/prompts/{prompt['id']}/versions/{mine}/approve", {"comment": "ok"}, format="json"
    ).json()
    assert (approved["status"], approved["author"], approved["review_comment"]) == (
        "approved",
        "alice@a.example",
        "ok",
    )

    # Rejection needs a reason and is final: the next attempt is a new version.
    assert admin.post(f"{base}/reject", {"comment": ""}, format="json").status_code == 400
    rejected = admin.post(f"{base}/reject", {"comment": "too terse"}, format="json").json()
    assert (rejected["status"], rejected["review_comment"]) == ("rejected", "too terse")
    assert builder.post(f"{base}/submit").json()["error"]["code"] == "not_draft"

    trail = list(
        AuditEvent.objects.filter(tenant=world.tenant_a, action__startswith="prompt.version_")
        .order_by("seq")
        .values_list("action", flat=True)
    )
    assert trail.count("prompt.version_approved") == 2
    assert "prompt.version_rejected" in trail
    assert "prompt.version_submitted" in trail


@pytest.mark.django_db
def test_a_protected_label_refuses_an_unapproved_version(world, alice_client):
    prompt = _prompt(alice_client)
    url = f"/api/v1/prompts/{prompt['id']}/labels"
    refused = alice_client.put(f"{url}/production", {"version": 1}, format="json")
    assert (refused.status_code, refused.json()["error"]["code"]) == (409, "not_approved")
    # staging is not protected: a draft may go there for testing.
    staged = alice_client.put(f"{url}/staging", {"version": 1}, format="json")
    assert staged.json() == {**staged.json(), "name": "staging", "version": 1, "protected": False}
    # A tenant's own label can be protected too; production cannot be unprotected.
    assert alice_client.put(f"{url}/eu", {"version": 1, "protected": True}, format="json").status_code == 409
    assert (
        alice_client.put(f"{url}/production", {"version": 1, "protected": False}, format="json").status_code
        == 400
    )
    _approve(alice_client, alice_client, prompt["id"], 1)
    assert alice_client.put(f"{url}/production", {"version": 1}, format="json").status_code == 200
    assert {(label["name"], label["version"]) for label in alice_client.get(url).json()} == {
        ("production", 1),
        ("staging", 1),
    }
    viewer = session_client(member(world.tenant_a, Role.VIEWER), world.tenant_a)
    assert viewer.put(f"{url}/staging", {"version": 1}, format="json").status_code == 403


@pytest.mark.django_db(transaction=True)
def test_label_moves_change_what_the_next_run_uses_and_roll_back(world, alice_client):
    prompt = _prompt(alice_client, template="version one for {{ who }}")
    _approve(alice_client, alice_client, prompt["id"], 1)
    two = _version(alice_client, prompt["id"], "version two for {{ who }}", "warmer")
    _approve(alice_client, alice_client, prompt["id"], two)
    url = f"/api/v1/prompts/{prompt['id']}/labels/production"
    assert alice_client.put(url, {"version": 1}, format="json").status_code == 200
    agent_id = create_agent(
        alice_client,
        {
            "inputs": {"type": "object", "properties": {"name": {"type": "string"}}},
            "steps": [
                {
                    "id": "ask",
                    "type": "llm",
                    "model": "sandbox/echo",
                    "prompt": {
                        "name": "greeting",
                        "label": "production",
                        "variables": {"who": "{{ input.name }}"},
                    },
                }
            ],
        },
    )

    def run_once() -> Run:
        started = alice_client.post(
            f"/api/v1/agents/{agent_id}/runs", {"input": {"name": "Ada"}}, format="json"
        )
        run_execute(started.json()["id"])
        return Run.objects.get(pk=started.json()["id"])

    first = run_once()
    assert first.output == "[sandbox] version one for Ada"
    assert [(p["prompt"], p["label"], p["version"]) for p in first.prompt_versions] == [
        ("greeting", "production", 1)
    ]
    assert alice_client.put(url, {"version": two}, format="json").status_code == 200
    assert run_once().output == "[sandbox] version two for Ada"  # no agent republished
    assert alice_client.put(url, {"version": 1}, format="json").status_code == 200  # rollback
    assert run_once().output == "[sandbox] version one for Ada"
    history = alice_client.get(f"/api/v1/prompts/{prompt['id']}/labels/history").json()
    assert [(h["label"], h["from_number"], h["to_number"]) for h in history] == [
        ("production", 2, 1),
        ("production", 1, 2),
        ("production", None, 1),
    ]
    moved = (
        AuditEvent.objects.filter(tenant=world.tenant_a, action="prompt.label_moved").order_by("-seq").first()
    )
    assert (moved.changes["before"]["version"], moved.changes["after"]["version"]) == (2, 1)
    run_detail = alice_client.get(f"/api/v1/runs/{first.pk}").json()
    assert run_detail["prompt_versions"][0]["version"] == 1


@pytest.mark.django_db
def test_an_agent_cannot_name_a_missing_prompt(world, alice_client):
    response = alice_client.post(
        "/api/v1/agents/",
        {
            "name": "x",
            "definition": {
                "steps": [{"id": "a", "type": "llm", "model": "sandbox/echo", "prompt": {"name": "nope"}}]
            },
        },
        format="json",
    )
    assert response.status_code == 400
    assert "no prompt named 'nope'" in str(response.json()["error"]["fields"])


@pytest.mark.django_db
def test_diff_and_render(world, alice_client, charlie_client):
    prompt = _prompt(alice_client, system="Be brief.", model_parameters={"temperature": 0.2})
    _version(alice_client, prompt["id"], "Say hello warmly to {{ who }}")
    diff = alice_client.get(f"/api/v1/prompts/{prompt['id']}/versions/diff?from=1&to=2").json()["diff"]
    assert "-Say hello to {{ who }}" in diff
    assert "+Say hello warmly to {{ who }}" in diff
    assert diff.startswith("--- v1\n+++ v2\n")
    render = f"/api/v1/prompts/{prompt['id']}/versions/1/render"
    missing = alice_client.post(render, {"variables": {}}, format="json")
    assert missing.status_code == 400
    assert missing.json()["error"]["code"] == "missing_variables"
    assert missing.json()["error"]["fields"] == {"variables": ["Missing variables: who."]}
    ok = alice_client.post(render, {"variables": {"who": "Grace"}}, format="json").json()
    assert ok == {"system": "Be brief.", "prompt": "Say hello to Grace"}
    bad = alice_client.post(
        f"/api/v1/prompts/{prompt['id']}/versions",
        {"template": "{{ unclosed", "model_parameters": {"temperature": 9}},
        format="json",
    )
    assert bad.status_code == 400
    assert charlie_client.get(f"/api/v1/prompts/{prompt['id']}").status_code == 404
    assert charlie_client.get("/api/v1/prompts/").json()["results"] == []


@pytest.mark.django_db
def test_the_review_service_checks_the_reviewers_right_too(world, alice_client):
    from agents.models import PromptVersion
    from agents.prompts.services import prompt_version_review
    from falcon.errors import Forbidden
    from tenants.audit import Actor

    prompt = _prompt(alice_client)
    alice_client.post(f"/api/v1/prompts/{prompt['id']}/versions/1/submit")
    version = PromptVersion.objects.get(prompt_id=prompt["id"], number=1)
    builder = member(world.tenant_a, Role.BUILDER)
    with pytest.raises(Forbidden, match="may not publish"):
        prompt_version_review(
            version=version, approve=True, comment="", actor=Actor.system("t"), reviewer=builder
        )
    version.refresh_from_db()
    assert version.status == "in_review"


@pytest.mark.django_db
def test_four_eyes_see_through_api_keys(world, alice_client, make_key):
    """A version written through a key counts as written by the key's creator; a key with no person
    behind it (an operator's) cannot approve under four eyes."""
    assert alice_client.patch("/api/v1/tenant", {"prompt_four_eyes": True}, format="json").status_code == 200
    created = alice_client.post(
        "/api/v1/api-keys/", {"name": "alice-admin", "scopes": ["write", "admin"]}, format="json"
    )
    alice_key = key_client(created.json()["key"])
    prompt = _prompt(alice_client)
    number = _version(alice_key, prompt["id"], "v2 {{ who }}", "via a key")
    base = f"/api/v1/prompts/{prompt['id']}/versions/{number}"
    assert alice_key.post(f"{base}/submit").status_code == 200
    # Alice wrote it through her key: neither her session nor her key may approve it.
    for reviewer in (alice_client, alice_key):
        refused = reviewer.post(f"{base}/approve", {"comment": "mine"}, format="json")
        assert (refused.status_code, refused.json()["error"]["code"]) == (403, "four_eyes")
    _, tenant_key = make_key(world.tenant_a, ["admin"])  # no person behind it
    refused = key_client(tenant_key).post(f"{base}/approve", {"comment": "ok"}, format="json")
    assert refused.status_code == 403
    admin = session_client(member(world.tenant_a, Role.ADMIN), world.tenant_a)
    assert admin.post(f"{base}/approve", {"comment": "fine"}, format="json").status_code == 200
