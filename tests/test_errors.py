"""One error shape everywhere, and bad input never becomes a 500 or a half-written change."""

from __future__ import annotations

import pytest

from tenants.models import ApiKey, Tenant

pytestmark = pytest.mark.django_db


def _error(response, *details: str) -> dict:
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields", *details}
    assert body["error"]["message"]
    return body["error"]


def test_malformed_json(world, alice_client):
    response = alice_client.generic(
        "POST", "/api/v1/api-keys/", '{"name": "x", ', content_type="application/json"
    )
    assert response.status_code == 400
    assert _error(response)["code"] == "malformed_body"
    assert not ApiKey.objects.filter(name="x").exists()


def test_wrong_types(world, alice_client):
    response = alice_client.post("/api/v1/api-keys/", {"name": "x", "scopes": "read"}, format="json")
    assert response.status_code == 400
    assert list(_error(response)["fields"]) == ["scopes"]
    response = alice_client.patch("/api/v1/tenant", {"require_mfa": "perhaps"}, format="json")
    assert response.status_code == 400
    assert list(_error(response)["fields"]) == ["require_mfa"]


def test_body_that_is_not_an_object(world, alice_client):
    response = alice_client.post("/api/v1/api-keys/", [1, 2], format="json")
    assert response.status_code == 400
    assert _error(response)["fields"] == {"non_field_errors": ["Expected a JSON object."]}


def test_unknown_fields_on_writes(world, alice_client):
    response = alice_client.post(
        "/api/v1/api-keys/", {"name": "x", "scopes": ["read"], "tenant": "tenant-b"}, format="json"
    )
    assert response.status_code == 400
    assert _error(response)["fields"] == {"tenant": ["Unknown field."]}
    assert not ApiKey.objects.filter(name="x").exists()


def test_oversize_body_is_413_before_it_is_read(world, alice_client, settings):
    settings.FALCON_MAX_BODY_BYTES = 2048
    response = alice_client.patch("/api/v1/tenant", {"name": "x" * 5000}, format="json")
    assert response.status_code == 413
    assert _error(response)["code"] == "payload_too_large"
    assert Tenant.objects.get(pk=world.tenant_a.pk).name == "Tenant A"


def test_unsupported_media_type(world, alice_client):
    response = alice_client.generic("POST", "/api/v1/api-keys/", "name=x", content_type="text/plain")
    assert response.status_code == 415
    assert _error(response)["code"] == "unsupported_media_type"


def test_unknown_route_and_method(world, alice_client):
    response = alice_client.get("/api/v1/no-such-thing/")
    assert response.status_code == 404
    assert _error(response) == {"code": "not_found", "message": "Not found.", "fields": {}}
    response = alice_client.put("/api/v1/tenant", {"name": "x"}, format="json")
    assert response.status_code == 405
    assert _error(response)["code"] == "method_not_allowed"
    response = alice_client.get("/api/v1/members/not-a-uuid/")
    assert response.status_code == 404


def test_bad_content_length(world, alice_client):
    response = alice_client.generic(
        "POST", "/api/v1/api-keys/", "{}", content_type="application/json", CONTENT_LENGTH="lots"
    )
    assert response.status_code == 400
    assert _error(response)["code"] == "invalid_content_length"


def test_unexpected_failure_is_500_in_the_same_shape_without_internals(world, alice_client, monkeypatch):
    def explode(**kwargs):
        raise RuntimeError("database password is hunter2")

    monkeypatch.setattr("tenants.services.tenant_update", explode)
    response = alice_client.patch("/api/v1/tenant", {"name": "x"}, format="json")
    assert response.status_code == 500
    error = _error(response)
    assert error["code"] == "internal_error"
    assert response["X-Request-ID"] in error["message"]
    assert "hunter2" not in response.content.decode()


def test_rate_limit_is_429_per_key_in_the_same_shape(world, make_key, settings):
    from billing import throttling
    from billing.services import plan_set
    from tenants.audit import Actor
    from tests.conftest import key_client

    # An API key's rate is its tenant plan's api_requests_per_minute.
    plan_set(
        tenant=world.tenant_a,
        plan="enterprise",
        overrides={"api_requests_per_minute": 3},
        actor=Actor.system("tests"),
    )
    throttling._plan_rates.clear()
    _, token = make_key(world.tenant_a, ["read"])
    _, other = make_key(world.tenant_a, ["read"])
    client = key_client(token)
    assert [client.get("/api/v1/tenant").status_code for _ in range(3)] == [200, 200, 200]
    response = client.get("/api/v1/tenant")
    assert response.status_code == 429
    error = _error(response, "metric", "limit")
    assert (error["code"], error["metric"], error["limit"]) == ("rate_limited", "api_requests_per_minute", 3)
    assert int(response["Retry-After"]) > 0
    # Another key has its own budget.
    assert key_client(other).get("/api/v1/tenant").status_code == 200


def test_deeply_nested_json_is_a_400_everywhere(world, alice_client, client):
    """Regression: a body of 100,000 '[' raised RecursionError in the parser (a 500)."""
    deep = "[" * 100_000 + "]" * 100_000
    for body in (deep, '{"name": ' + "[" * 70 + "]" * 70 + "}"):
        response = alice_client.generic("POST", "/api/v1/api-keys/", body, content_type="application/json")
        assert response.status_code == 400, response.content[:200]
        error = _error(response)
        assert error["code"] == "malformed_body"
        assert "nested" in error["message"]
    hook = alice_client.post(
        "/api/v1/agents/",
        {"name": "a", "definition": {"steps": [{"id": "s", "type": "transform", "value": 1}]}},
        format="json",
    ).json()
    alice_client.post(f"/api/v1/agents/{hook['id']}/versions/1/publish")
    trigger = alice_client.post(
        "/api/v1/triggers/",
        {
            "name": "open",
            "agent": hook["id"],
            "kind": "webhook",
            "config": {"auth": "none", "allow_unsigned": True},
        },
        format="json",
    ).json()
    response = client.generic("POST", f"/hooks/{trigger['public_id']}", deep, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "malformed_body"


def test_every_api_path_answers_in_the_error_shape_whatever_the_method(world):
    """Regression: a POST to an unknown API path answered Django's 403 CSRF page in HTML."""
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(world.alice)
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        for path in ("/api/v1/no-such-thing/", "/api/nothing", "/hooks/x/y/z", "/billing/nothing"):
            response = browser.generic(method, path, "{}", content_type="application/json")
            assert response["Content-Type"].startswith("application/json"), (method, path)
            assert response.status_code == 404, (method, path, response.status_code)
            _error(response)
    # A known API route without the CSRF token (a browser session): still JSON.
    response = browser.post("/api/v1/api-keys/", data="{}", content_type="application/json")
    assert response.status_code == 403
    assert response["Content-Type"].startswith("application/json")
