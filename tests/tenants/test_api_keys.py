"""API keys: format and checksum, hashing at rest, scopes, revocation, expiry, last-used throttling."""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from tenants.models import ApiKey, AuditEvent
from tenants.tokens import api_key_generate, api_key_is_well_formed, secret_hash
from tests.conftest import key_client

pytestmark = pytest.mark.django_db

KEY_SHAPE = re.compile(r"^flk_live_[0-9A-Za-z]{32}_[0-9A-Za-z]{6}$")


def test_generated_keys_have_the_documented_shape_and_a_valid_checksum():
    keys = {api_key_generate() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert KEY_SHAPE.match(key)
        assert api_key_is_well_formed(key)


def test_a_single_changed_character_breaks_the_checksum():
    key = api_key_generate()
    body, checksum = key.rsplit("_", 1)
    flipped = body[:-1] + ("A" if body[-1] != "A" else "B")
    assert not api_key_is_well_formed(f"{flipped}_{checksum}")
    assert not api_key_is_well_formed(key[:-1] + ("0" if key[-1] != "0" else "1"))
    assert not api_key_is_well_formed("flk_live_short_abcdef")


def test_create_via_api_returns_the_secret_once_and_stores_only_its_hash(world, alice_client):
    response = alice_client.post(
        "/api/v1/api-keys/", {"name": "ci", "scopes": ["read", "run"]}, format="json"
    )
    assert response.status_code == 201
    token = response.json()["key"]
    assert KEY_SHAPE.match(token)
    key = ApiKey.objects.get(pk=response.json()["id"])
    assert key.key_hash == secret_hash(token)
    assert key.prefix == token[:17]
    assert key.scopes == ["read", "run"]
    assert key.created_by == world.alice
    # The secret is nowhere in the database: not in the key row, not in the audit log.
    with connection.cursor() as cursor:
        cursor.execute("SELECT row_to_json(k)::text FROM tenants_apikey k")
        assert all(token not in row[0] for row in cursor.fetchall())
        cursor.execute("SELECT row_to_json(e)::text FROM tenants_auditevent e")
        assert all(token not in row[0] for row in cursor.fetchall())
    # Listing and fetching never show it again.
    listed = alice_client.get("/api/v1/api-keys/").json()["results"]
    assert all("key" not in item for item in listed)
    assert token not in alice_client.get(f"/api/v1/api-keys/{key.pk}/").content.decode()
    event = AuditEvent.objects.get(action="api_key.created", target_id=str(key.pk))
    assert event.actor_id == str(world.alice.pk)
    assert event.changes["after"]["scopes"] == ["read", "run"]


def test_the_key_authenticates_for_its_own_tenant(world, make_key):
    _, token = make_key(world.tenant_a, ["read"])
    response = key_client(token).get("/api/v1/tenant")
    assert response.status_code == 200
    assert response.json()["slug"] == "tenant-a"


@pytest.mark.parametrize(
    "header",
    [
        "Bearer flk_live_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa_000000",  # bad checksum
        "Bearer nonsense",
        "Bearer a b",
    ],
)
def test_malformed_or_unknown_keys_get_401(world, header):
    from rest_framework.test import APIClient

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/tenant")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "authentication_failed"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_well_formed_key_that_was_never_issued_gets_401(world):
    response = key_client(api_key_generate()).get("/api/v1/tenant")
    assert response.status_code == 401


def test_no_credentials_get_401(db):
    from rest_framework.test import APIClient

    response = APIClient().get("/api/v1/tenant")
    assert response.status_code == 401
    assert response.json() == {
        "error": {
            "code": "not_authenticated",
            "message": "Authentication credentials were not provided.",
            "fields": {},
        }
    }


def test_revocation_is_immediate_and_irreversible(world, alice_client, make_key):
    key, token = make_key(world.tenant_a, ["read"])
    assert key_client(token).get("/api/v1/tenant").status_code == 200
    response = alice_client.delete(f"/api/v1/api-keys/{key.pk}/")
    assert response.status_code == 204
    assert key_client(token).get("/api/v1/tenant").status_code == 401
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert alice_client.get(f"/api/v1/api-keys/{key.pk}/").json()["status"] == "revoked"
    # Revoking again changes nothing and writes no second event.
    assert alice_client.delete(f"/api/v1/api-keys/{key.pk}/").status_code == 204
    assert AuditEvent.objects.filter(action="api_key.revoked", target_id=str(key.pk)).count() == 1


def test_expired_key_gets_401(world, alice_client):
    soon = timezone.now() + timedelta(hours=1)
    response = alice_client.post(
        "/api/v1/api-keys/",
        {"name": "short", "scopes": ["read"], "expires_at": soon.isoformat()},
        format="json",
    )
    assert response.status_code == 201
    token = response.json()["key"]
    assert key_client(token).get("/api/v1/tenant").status_code == 200
    ApiKey.objects.filter(pk=response.json()["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert key_client(token).get("/api/v1/tenant").status_code == 401


def test_expiry_in_the_past_is_refused(world, alice_client):
    past = (timezone.now() - timedelta(days=1)).isoformat()
    response = alice_client.post(
        "/api/v1/api-keys/", {"name": "old", "scopes": ["read"], "expires_at": past}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"] == {"expires_at": ["The expiry must be in the future."]}


def test_last_used_is_written_at_most_once_a_minute(world, make_key, django_assert_num_queries):
    key, token = make_key(world.tenant_a, ["read"])
    client = key_client(token)
    assert client.get("/api/v1/tenant").status_code == 200
    key.refresh_from_db()
    first_use = key.last_used_at
    assert first_use is not None

    # Used again within the minute: no write.
    assert client.get("/api/v1/tenant").status_code == 200
    key.refresh_from_db()
    assert key.last_used_at == first_use

    # Thirty seconds ago still counts as recent.
    recent = timezone.now() - timedelta(seconds=30)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=recent)
    with django_assert_num_queries(1):  # only the key lookup: no UPDATE
        assert client.get("/api/v1/tenant").status_code == 200
    key.refresh_from_db()
    assert key.last_used_at == recent

    # Older than a minute: recorded again.
    stale = timezone.now() - timedelta(minutes=2)
    ApiKey.objects.filter(pk=key.pk).update(last_used_at=stale)
    assert client.get("/api/v1/tenant").status_code == 200
    key.refresh_from_db()
    assert key.last_used_at > stale + timedelta(minutes=1)


def test_unknown_scope_and_empty_scopes_are_refused(world, alice_client):
    response = alice_client.post("/api/v1/api-keys/", {"name": "x", "scopes": ["root"]}, format="json")
    assert response.status_code == 400
    assert "scopes" in response.json()["error"]["fields"]
    response = alice_client.post("/api/v1/api-keys/", {"name": "x", "scopes": []}, format="json")
    assert response.status_code == 400
    assert "scopes" in response.json()["error"]["fields"]


def test_an_admin_may_mint_keys_within_their_role():
    from tenants.permissions import role_may_grant_scopes

    assert role_may_grant_scopes("admin", ["admin", "audit", "read", "write", "run"])
    assert not role_may_grant_scopes("builder", ["admin"])
    assert not role_may_grant_scopes("viewer", ["audit"])
    assert role_may_grant_scopes("auditor", ["audit", "read"])


def test_admin_creates_a_key_through_the_api(world):
    from tests.conftest import member, session_client

    admin = member(world.tenant_a, "admin")
    client = session_client(admin, world.tenant_a)
    ok = client.post(
        "/api/v1/api-keys/", {"name": "ops", "scopes": ["admin", "audit", "read"]}, format="json"
    )
    assert ok.status_code == 201
    assert ok.json()["created_by"] == admin.email


def test_key_scopes_limit_what_it_can_do(world, make_key):
    _, read_only = make_key(world.tenant_a, ["read"])
    client = key_client(read_only)
    assert client.get("/api/v1/members/").status_code == 200
    assert client.get("/api/v1/audit-events/").status_code == 403
    assert client.get("/api/v1/api-keys/").status_code == 403
    response = client.post("/api/v1/api-keys/", {"name": "escalate", "scopes": ["admin"]}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"


def test_cli_prints_only_the_key(world):
    out = StringIO()
    call_command("api_key_create", "tenant-a", "--name", "deploy", "--scopes", "read,run", stdout=out)
    token = out.getvalue().strip()
    assert KEY_SHAPE.match(token)
    key = ApiKey.objects.get(key_hash=secret_hash(token))
    assert key.scopes == ["read", "run"]
    assert key.tenant == world.tenant_a
    assert AuditEvent.objects.filter(action="api_key.created", actor_label="cli:api_key_create").exists()


def test_cli_refuses_unknown_tenant_and_scope(world):
    with pytest.raises(CommandError, match="No tenant"):
        call_command("api_key_create", "nope", "--name", "x", "--scopes", "read", stdout=StringIO())
    with pytest.raises(CommandError, match="Unknown scopes: god"):
        call_command("api_key_create", "tenant-a", "--name", "x", "--scopes", "god", stdout=StringIO())


def test_a_key_acts_with_at_most_the_rights_its_creator_holds_now(world, alice_client):
    """Regression: a demoted admin's key re-promoted her, and after her removal it re-invited her."""
    from tests.conftest import member, session_client

    dana = member(world.tenant_a, "admin", email="dana@a.example")
    dana_client = session_client(dana, world.tenant_a)
    created = dana_client.post(
        "/api/v1/api-keys/", {"name": "dana-admin", "scopes": ["admin"]}, format="json"
    )
    assert created.status_code == 201, created.json()
    key = key_client(created.json()["key"])
    membership = alice_client.get("/api/v1/members/").json()["results"]
    dana_membership = next(m for m in membership if m["user"]["email"] == "dana@a.example")
    invite = {"email": "someone@a.example", "role": "viewer"}
    assert key.post("/api/v1/invitations/", invite, format="json").status_code == 201

    # Demoted to viewer: the key narrows to what a viewer may do.
    demoted = alice_client.patch(
        f"/api/v1/members/{dana_membership['id']}", {"role": "viewer"}, format="json"
    )
    assert demoted.status_code == 200
    promote_self = key.patch(f"/api/v1/members/{dana_membership['id']}", {"role": "admin"}, format="json")
    assert promote_self.status_code == 403
    assert (
        key.post(
            "/api/v1/invitations/", {"email": "x@a.example", "role": "viewer"}, format="json"
        ).status_code
        == 403
    )
    assert key.get("/api/v1/tenant").status_code == 200  # what a viewer may still do

    # Removed: the key is revoked with her, and the log says why.
    assert alice_client.delete(f"/api/v1/members/{dana_membership['id']}").status_code == 204
    assert (
        key.post(
            "/api/v1/invitations/", {"email": "dana@a.example", "role": "admin"}, format="json"
        ).status_code
        == 401
    )
    revoked = AuditEvent.objects.get(tenant=world.tenant_a, action="api_key.revoked")
    assert "dana@a.example left" in revoked.changes["after"]["reason"]


def test_keys_minted_by_operators_belong_to_the_tenant(world):
    out = StringIO()
    call_command("api_key_create", "tenant-a", "--name", "ops", "--scopes", "read,run", stdout=out)
    key = key_client(out.getvalue().strip())
    assert key.get("/api/v1/agents/").status_code == 200
