"""Invitations: create (token once, e-mailed), list, revoke, accept by token; expiry and mismatches."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from tenants.models import AuditEvent, Invitation, Membership
from tenants.tokens import secret_hash
from tests.conftest import session_client
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _invite(client, email: str = "dana@example.com", role: str = "builder", capture=None):
    return client.post("/api/v1/invitations/", {"email": email, "role": role}, format="json")


def test_owner_invites_and_the_invitee_gets_one_email_with_the_link(
    world, alice_client, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = _invite(alice_client, "Dana@Example.com")
    assert response.status_code == 201
    body = response.json()
    assert body["email"] == "dana@example.com"
    assert body["status"] == "pending"
    assert body["invited_by"] == "alice@a.example"
    token = body["token"]
    invitation = Invitation.objects.get(pk=body["id"])
    assert invitation.token_hash == secret_hash(token)
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["dana@example.com"]
    assert body["accept_url"] in mail.outbox[0].body
    assert token in mail.outbox[0].body
    # Listing never shows the token again.
    listed = alice_client.get("/api/v1/invitations/").json()["results"]
    assert [item["id"] for item in listed] == [body["id"]]
    assert "token" not in listed[0]
    assert AuditEvent.objects.filter(action="invitation.created", target_id=body["id"]).exists()


def test_invitee_accepts_and_becomes_a_member_with_the_role(world, alice_client):
    token = _invite(alice_client).json()["token"]
    dana = UserFactory(email="dana@example.com")
    response = session_client(dana).post("/api/v1/invitations/accept", {"token": token}, format="json")
    assert response.status_code == 201
    assert response.json()["slug"] == "tenant-a"
    assert response.json()["role"] == "builder"
    assert Membership.objects.get(tenant=world.tenant_a, user=dana).role == "builder"
    assert AuditEvent.objects.filter(action="member.added", actor_id=str(dana.pk)).exists()
    # The token is single-use.
    again = session_client(dana).post("/api/v1/invitations/accept", {"token": token}, format="json")
    assert again.status_code == 410
    assert again.json()["error"]["code"] == "invitation_used"


def test_someone_else_cannot_use_the_token(world, alice_client):
    token = _invite(alice_client).json()["token"]
    response = session_client(world.charlie).post(
        "/api/v1/invitations/accept", {"token": token}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "invitation_email_mismatch"
    assert not Membership.objects.filter(tenant=world.tenant_a, user=world.charlie).exists()


def test_unknown_token_is_404_and_expired_is_410(world, alice_client):
    dana = UserFactory(email="dana@example.com")
    response = session_client(dana).post("/api/v1/invitations/accept", {"token": "fli_nope"}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["fields"] == {"token": ["No invitation matches this token."]}
    token = _invite(alice_client).json()["token"]
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = session_client(dana).post("/api/v1/invitations/accept", {"token": token}, format="json")
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "invitation_expired"
    # An expired invitation no longer blocks a new one to the same address.
    assert _invite(alice_client).status_code == 201


def test_revoked_invitation_cannot_be_accepted(world, alice_client):
    body = _invite(alice_client).json()
    assert alice_client.delete(f"/api/v1/invitations/{body['id']}/").status_code == 204
    assert alice_client.get(f"/api/v1/invitations/{body['id']}/").json()["status"] == "revoked"
    dana = UserFactory(email="dana@example.com")
    response = session_client(dana).post(
        "/api/v1/invitations/accept", {"token": body["token"]}, format="json"
    )
    assert response.status_code == 410
    assert response.json()["error"]["code"] == "invitation_revoked"
    assert AuditEvent.objects.filter(action="invitation.revoked", target_id=body["id"]).count() == 1


def test_duplicate_pending_invitation_and_existing_member_are_conflicts(world, alice_client):
    assert _invite(alice_client).status_code == 201
    response = _invite(alice_client, "DANA@example.com")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "invitation_pending"
    response = _invite(alice_client, "bob@a.example")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "already_member"


def test_only_owners_invite_owners_and_viewers_cannot_invite(world, bob_client):
    from tests.conftest import member

    admin = member(world.tenant_a, "admin")
    response = _invite(session_client(admin, world.tenant_a), role="owner")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "owner_required"
    assert _invite(bob_client).status_code == 403
    assert bob_client.get("/api/v1/invitations/").status_code == 403


def test_bad_invitation_input(world, alice_client):
    response = alice_client.post(
        "/api/v1/invitations/", {"email": "not-an-email", "role": "emperor"}, format="json"
    )
    assert response.status_code == 400
    assert set(response.json()["error"]["fields"]) == {"email", "role"}


def test_api_keys_cannot_accept_invitations(world, alice_client, make_key):
    from tests.conftest import key_client

    token = _invite(alice_client).json()["token"]
    _, key = make_key(world.tenant_b, ["admin"])
    response = key_client(key).post("/api/v1/invitations/accept", {"token": token}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "session_required"


def test_accept_page_in_the_dashboard(world, alice_client):
    token = _invite(alice_client).json()["token"]
    dana = UserFactory(email="dana@example.com")
    from django.test import Client

    browser = Client()
    browser.force_login(dana)
    page = browser.get(f"/invitations/accept?token={token}")
    assert page.status_code == 200
    assert b"Accept invitation" in page.content
    response = browser.post("/invitations/accept", {"token": token})
    assert response.status_code == 302
    assert Membership.objects.filter(tenant=world.tenant_a, user=dana).exists()
