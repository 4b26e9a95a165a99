"""Who may do what, written out by hand (not derived from tenants.permissions), for roles and scopes."""

from __future__ import annotations

import itertools
import json

import pytest

from tenants.models import Membership
from tests.conftest import key_client, member, session_client

pytestmark = pytest.mark.django_db

ALL_ROLES = {"owner", "admin", "builder", "operator", "viewer", "auditor"}
_counter = itertools.count()

# (name, method, path or path factory, body factory, roles allowed)
CASES = [
    ("read tenant", "GET", "/api/v1/tenant", None, ALL_ROLES),
    (
        "rename tenant",
        "PATCH",
        "/api/v1/tenant",
        lambda: {"name": f"Renamed {next(_counter)}"},
        {"owner", "admin"},
    ),
    ("list members", "GET", "/api/v1/members/", None, ALL_ROLES),
    ("change a role", "PATCH", "member", lambda: {"role": "operator"}, {"owner", "admin"}),
    ("remove a member", "DELETE", "member", None, {"owner", "admin"}),
    ("list invitations", "GET", "/api/v1/invitations/", None, {"owner", "admin"}),
    (
        "invite",
        "POST",
        "/api/v1/invitations/",
        lambda: {"email": f"new{next(_counter)}@example.com", "role": "viewer"},
        {"owner", "admin"},
    ),
    ("list api keys", "GET", "/api/v1/api-keys/", None, {"owner", "admin"}),
    (
        "create api key",
        "POST",
        "/api/v1/api-keys/",
        lambda: {"name": "k", "scopes": ["read"]},
        {"owner", "admin"},
    ),
    ("read audit log", "GET", "/api/v1/audit-events/", None, {"owner", "admin", "auditor"}),
    ("export audit log", "GET", "/api/v1/audit-events/export", None, {"owner", "admin", "auditor"}),
]


def _call(client, world, method: str, path: str, body_factory):
    if path == "member":
        target = member(world.tenant_a, "viewer")
        path = f"/api/v1/members/{Membership.objects.get(user=target).pk}/"
    body = body_factory() if body_factory else None
    return client.generic(
        method, path, "" if body is None else json.dumps(body), content_type="application/json"
    )


@pytest.mark.parametrize("role", sorted(ALL_ROLES))
def test_role_matrix(world, role):
    person = member(world.tenant_a, role)
    client = session_client(person, world.tenant_a)
    for name, method, path, body_factory, allowed in CASES:
        response = _call(client, world, method, path, body_factory)
        if role in allowed:
            assert response.status_code < 300, f"{role} should be able to {name}: {response.status_code}"
        else:
            assert response.status_code == 403, f"{role} must not {name}: {response.status_code}"
            assert response.json()["error"]["code"] == "permission_denied"


SCOPE_CASES = {
    "read": {"read tenant", "list members"},
    "write": {"read tenant"},
    "run": {"read tenant"},
    "admin": {
        "read tenant",
        "rename tenant",
        "list members",
        "change a role",
        "remove a member",
        "list invitations",
        "invite",
        "list api keys",
        "create api key",
    },
    "audit": {"read tenant", "read audit log", "export audit log"},
}


@pytest.mark.parametrize("scope", sorted(SCOPE_CASES))
def test_scope_matrix(world, make_key, scope):
    _, token = make_key(world.tenant_a, [scope])
    client = key_client(token)
    for name, method, path, body_factory, _ in CASES:
        response = _call(client, world, method, path, body_factory)
        if name in SCOPE_CASES[scope]:
            assert response.status_code < 300, (
                f"a {scope} key should be able to {name}: {response.status_code}"
            )
        else:
            assert response.status_code == 403, f"a {scope} key must not {name}: {response.status_code}"
