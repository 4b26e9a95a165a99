"""Members: list, change role, remove, leave; the last owner is protected; only owners touch owners."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from tenants.audit import Actor
from tenants.models import AuditEvent, Membership
from tenants.permissions import Role
from tenants.services import member_role_change
from tests.conftest import member, session_client

pytestmark = pytest.mark.django_db


def _membership(tenant, user) -> Membership:
    return Membership.objects.get(tenant=tenant, user=user)


def test_every_member_can_list_members_without_n_plus_one(world, bob_client, django_assert_num_queries):
    for _ in range(5):
        member(world.tenant_a, "builder")
    # session + user + membership/tenant + members page: constant, whatever the number of members
    with django_assert_num_queries(4):
        response = bob_client.get("/api/v1/members/")
    assert response.status_code == 200
    emails = {item["user"]["email"] for item in response.json()["results"]}
    assert {"alice@a.example", "bob@a.example"} <= emails
    assert "charlie@b.example" not in emails
    assert len(emails) == 7


def test_owner_changes_a_role_and_it_is_audited(world, alice_client):
    bob_membership = _membership(world.tenant_a, world.bob)
    response = alice_client.patch(f"/api/v1/members/{bob_membership.pk}/", {"role": "builder"}, format="json")
    assert response.status_code == 200
    assert response.json()["role"] == "builder"
    bob_membership.refresh_from_db()
    assert bob_membership.role == "builder"
    event = AuditEvent.objects.get(action="member.role_changed", target_id=str(bob_membership.pk))
    assert event.changes == {
        "before": {"role": "viewer", "user": "bob@a.example"},
        "after": {"role": "builder", "user": "bob@a.example"},
    }
    assert event.actor_label == "alice@a.example"
    assert event.tenant == world.tenant_a


def test_viewer_cannot_change_roles(world, bob_client):
    alice_membership = _membership(world.tenant_a, world.alice)
    response = bob_client.patch(f"/api/v1/members/{alice_membership.pk}/", {"role": "viewer"}, format="json")
    assert response.status_code == 403
    assert _membership(world.tenant_a, world.alice).role == "owner"


def test_admin_manages_others_but_not_owners(world):
    admin = member(world.tenant_a, "admin")
    client = session_client(admin, world.tenant_a)
    bob_membership = _membership(world.tenant_a, world.bob)
    assert (
        client.patch(f"/api/v1/members/{bob_membership.pk}/", {"role": "operator"}, format="json").status_code
        == 200
    )
    # Promoting to owner, demoting an owner and removing an owner are for owners only.
    response = client.patch(f"/api/v1/members/{bob_membership.pk}/", {"role": "owner"}, format="json")
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "owner_required"
    alice_membership = _membership(world.tenant_a, world.alice)
    assert (
        client.patch(f"/api/v1/members/{alice_membership.pk}/", {"role": "viewer"}, format="json").status_code
        == 403
    )
    assert client.delete(f"/api/v1/members/{alice_membership.pk}/").status_code == 403
    assert _membership(world.tenant_a, world.alice).role == "owner"


def test_the_last_owner_can_neither_be_demoted_nor_leave(world, alice_client):
    alice_membership = _membership(world.tenant_a, world.alice)
    response = alice_client.patch(f"/api/v1/members/{alice_membership.pk}/", {"role": "admin"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_owner"
    response = alice_client.delete(f"/api/v1/members/{alice_membership.pk}/")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_owner"
    assert _membership(world.tenant_a, world.alice).role == "owner"


def test_with_a_second_owner_the_first_may_step_down(world, alice_client):
    bob_membership = _membership(world.tenant_a, world.bob)
    assert (
        alice_client.patch(
            f"/api/v1/members/{bob_membership.pk}/", {"role": "owner"}, format="json"
        ).status_code
        == 200
    )
    alice_membership = _membership(world.tenant_a, world.alice)
    assert (
        alice_client.patch(
            f"/api/v1/members/{alice_membership.pk}/", {"role": "admin"}, format="json"
        ).status_code
        == 200
    )
    assert _membership(world.tenant_a, world.alice).role == "admin"


def test_anyone_may_leave(world, bob_client):
    bob_membership = _membership(world.tenant_a, world.bob)
    assert bob_client.delete(f"/api/v1/members/{bob_membership.pk}/").status_code == 204
    assert not Membership.objects.filter(pk=bob_membership.pk).exists()
    assert AuditEvent.objects.filter(action="member.left", target_id=str(bob_membership.pk)).exists()


def test_viewer_cannot_remove_others(world, bob_client):
    alice_membership = _membership(world.tenant_a, world.alice)
    assert bob_client.delete(f"/api/v1/members/{alice_membership.pk}/").status_code == 403


def test_owner_removes_a_member(world, alice_client):
    bob_membership = _membership(world.tenant_a, world.bob)
    assert alice_client.delete(f"/api/v1/members/{bob_membership.pk}/").status_code == 204
    event = AuditEvent.objects.get(action="member.removed")
    assert event.changes["before"] == {"user": "bob@a.example", "role": "viewer"}


def test_unknown_role_is_a_clear_error(world, alice_client):
    bob_membership = _membership(world.tenant_a, world.bob)
    response = alice_client.patch(f"/api/v1/members/{bob_membership.pk}/", {"role": "king"}, format="json")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["role"]


def test_an_api_key_with_admin_scope_manages_members_but_never_owners(world, make_key):
    from tests.conftest import key_client

    _, token = make_key(world.tenant_a, ["admin"])
    client = key_client(token)
    bob_membership = _membership(world.tenant_a, world.bob)
    assert (
        client.patch(f"/api/v1/members/{bob_membership.pk}/", {"role": "builder"}, format="json").status_code
        == 200
    )
    assert (
        client.patch(f"/api/v1/members/{bob_membership.pk}/", {"role": "owner"}, format="json").status_code
        == 403
    )


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_at_once_leave_one_owner(world):
    """The owner rows are locked: of two concurrent demotions, the second sees one owner left."""
    second = _membership(world.tenant_a, world.bob)
    Membership.objects.filter(pk=second.pk).update(role=Role.OWNER)
    first = _membership(world.tenant_a, world.alice)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def demote(membership: Membership) -> None:
        try:
            barrier.wait()
            member_role_change(
                membership=membership, role=Role.ADMIN, actor=Actor.system("t"), acting_role="owner"
            )
            outcomes.append("ok")
        except Exception as exc:
            outcomes.append(type(exc).__name__)
        finally:
            connection.close()

    threads = [threading.Thread(target=demote, args=(m,)) for m in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["Conflict", "ok"]
    assert Membership.objects.filter(tenant=world.tenant_a, role=Role.OWNER).count() == 1
