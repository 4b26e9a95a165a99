"""The audit log: written by services, append-only, hash-chained, verifiable, filterable, exportable."""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import threading
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from tenants.audit import GENESIS_HASH, Actor, audit_record, audit_verify_tenant
from tenants.models import AuditEvent
from tests.conftest import key_client, member, session_client

pytestmark = pytest.mark.django_db


def _record(tenant, n: int, action: str = "test.happened") -> None:
    for i in range(n):
        audit_record(
            tenant=tenant, actor=Actor.system("tests"), action=action, target_type="thing", target_id=i
        )


def test_chain_links_each_row_to_the_previous(world):
    _record(world.tenant_a, 3)
    events = list(AuditEvent.objects.filter(tenant=world.tenant_a).order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].prev_hash == GENESIS_HASH
    for previous, current in itertools.pairwise(events):
        assert current.prev_hash == previous.hash
    assert audit_verify_tenant(world.tenant_a) is None
    # Each tenant has its own chain.
    assert AuditEvent.objects.filter(tenant=world.tenant_b).order_by("seq").first().prev_hash == GENESIS_HASH


def test_secrets_are_redacted_from_changes(world):
    event = audit_record(
        tenant=world.tenant_a,
        actor=Actor.system("t"),
        action="x.y",
        target_type="t",
        target_id="1",
        after={"password": "hunter2", "api_key": "flk_live_x", "name": "visible"},
    )
    assert event.changes == {"after": {"password": "[redacted]", "api_key": "[redacted]", "name": "visible"}}


def test_the_database_refuses_updates_and_deletes(world):
    event = AuditEvent.objects.filter(tenant=world.tenant_a).first()
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="tampered")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE tenants_auditevent SET actor_label = 'someone else'")
    assert AuditEvent.objects.get(pk=event.pk).action == event.action


def _tamper(sql: str, params: list[Any]) -> None:
    """What an attacker with table-owner rights could do: switch the trigger off and edit rows."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # flush the test transaction's deferred FK checks
        cursor.execute("ALTER TABLE tenants_auditevent DISABLE TRIGGER tenants_auditevent_append_only")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE tenants_auditevent ENABLE TRIGGER tenants_auditevent_append_only")


def test_audit_verify_names_the_first_altered_row(world):
    _record(world.tenant_a, 5)
    out = StringIO()
    call_command("audit_verify", "--tenant", "tenant-a", stdout=out)
    assert "tenant-a: ok" in out.getvalue()

    victim = AuditEvent.objects.get(tenant=world.tenant_a, seq=4)
    _tamper(
        "UPDATE tenants_auditevent SET changes = %s WHERE id = %s",
        ['{"after": {"role": "owner"}}', victim.pk],
    )
    err = StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("audit_verify", "--tenant", "tenant-a", stdout=StringIO(), stderr=err)
    assert raised.value.returncode == 1
    assert f"BROKEN at event #4 (id {victim.pk})" in err.getvalue()
    assert "altered" in err.getvalue()
    # The other tenant's chain is untouched.
    call_command("audit_verify", "--tenant", "tenant-b", stdout=StringIO())


def test_audit_verify_detects_a_removed_row(world):
    _record(world.tenant_a, 4)
    _tamper("DELETE FROM tenants_auditevent WHERE tenant_id = %s AND seq = 3", [world.tenant_a.pk])
    err = StringIO()
    with pytest.raises(CommandError):
        call_command("audit_verify", stdout=StringIO(), stderr=err)
    assert "tenant-a: BROKEN at event #4" in err.getvalue()
    assert "sequence gap" in err.getvalue()


def test_audit_verify_detects_a_rewritten_chain_link(world):
    _record(world.tenant_a, 3)
    victim = AuditEvent.objects.get(tenant=world.tenant_a, seq=2)
    _tamper("UPDATE tenants_auditevent SET prev_hash = %s WHERE id = %s", ["f" * 64, victim.pk])
    broken = audit_verify_tenant(world.tenant_a)
    assert broken is not None
    assert broken.seq == 2
    assert "prev_hash" in broken.reason


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_never_fork_the_chain(world):
    writers, per_writer = 8, 15
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            barrier.wait()
            for i in range(per_writer):
                with transaction.atomic():
                    audit_record(
                        tenant=world.tenant_a,
                        actor=Actor.system(f"w{n}"),
                        action="load.write",
                        target_type="thing",
                        target_id=f"{n}-{i}",
                    )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert (
        AuditEvent.objects.filter(tenant=world.tenant_a, action="load.write").count() == writers * per_writer
    )
    seqs = list(
        AuditEvent.objects.filter(tenant=world.tenant_a).order_by("seq").values_list("seq", flat=True)
    )
    assert seqs == list(range(1, len(seqs) + 1))
    assert audit_verify_tenant(world.tenant_a) is None


# --- API ------------------------------------------------------------------------------------------------


def test_who_may_read_the_log(world, bob_client, alice_client, make_key):
    auditor = member(world.tenant_a, "auditor")
    admin = member(world.tenant_a, "admin")
    builder = member(world.tenant_a, "builder")
    assert alice_client.get("/api/v1/audit-events/").status_code == 200
    assert session_client(auditor, world.tenant_a).get("/api/v1/audit-events/").status_code == 200
    assert session_client(admin, world.tenant_a).get("/api/v1/audit-events/").status_code == 200
    assert session_client(builder, world.tenant_a).get("/api/v1/audit-events/").status_code == 403
    assert bob_client.get("/api/v1/audit-events/").status_code == 403
    _, audit_key = make_key(world.tenant_a, ["audit"])
    _, read_key = make_key(world.tenant_a, ["read", "write", "run", "admin"])
    assert key_client(audit_key).get("/api/v1/audit-events/").status_code == 200
    assert key_client(read_key).get("/api/v1/audit-events/").status_code == 403


def test_list_is_newest_first_with_cursor_pages_and_constant_queries(
    world, alice_client, django_assert_num_queries
):
    _record(world.tenant_a, 7)
    total = AuditEvent.objects.filter(tenant=world.tenant_a).count()
    with django_assert_num_queries(4):
        first = alice_client.get("/api/v1/audit-events/?limit=4").json()
    seen = [e["seq"] for e in first["results"]]
    assert seen == [total, total - 1, total - 2, total - 3]
    page = first
    while page["next"]:
        page = alice_client.get(page["next"]).json()
        seen += [e["seq"] for e in page["results"]]
    assert seen == list(range(total, 0, -1))


def test_filters(world, alice_client):
    bob_membership_id = str(world.bob.memberships.get().pk)
    alice_client.patch(f"/api/v1/members/{bob_membership_id}/", {"role": "builder"}, format="json")
    _record(world.tenant_a, 2, action="other.thing")

    def actions(query: str) -> list[str]:
        response = alice_client.get(f"/api/v1/audit-events/?{query}")
        assert response.status_code == 200, response.json()
        return [e["action"] for e in response.json()["results"]]

    assert actions("action=member.role_changed") == ["member.role_changed"]
    assert set(actions("action=member.*")) == {"member.added", "member.role_changed"}
    assert actions(f"actor={world.alice.pk}") == ["member.role_changed"]
    assert actions("actor_type=user") == ["member.role_changed"]
    assert actions(f"target_type=membership&target_id={bob_membership_id}") == ["member.role_changed"]
    future = (timezone.now() + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    assert actions(f"since={future}") == []
    assert len(actions(f"until={future}")) == AuditEvent.objects.filter(tenant=world.tenant_a).count()


def test_bad_filters_are_400_with_the_field(world, alice_client):
    response = alice_client.get("/api/v1/audit-events/?since=yesterday")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["since"]
    response = alice_client.get("/api/v1/audit-events/?actor_type=robot")
    assert list(response.json()["error"]["fields"]) == ["actor_type"]
    response = alice_client.get("/api/v1/audit-events/?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z")
    assert list(response.json()["error"]["fields"]) == ["until"]


def test_export_jsonl_streams_every_event_oldest_first(world, alice_client):
    _record(world.tenant_a, 5)
    response = alice_client.get("/api/v1/audit-events/export?format=jsonl")
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("application/jsonl")
    assert 'filename="audit-tenant-a-' in response["Content-Disposition"]
    rows = [json.loads(line) for line in b"".join(response.streaming_content).decode().splitlines()]
    expected = list(AuditEvent.objects.filter(tenant=world.tenant_a).order_by("seq"))
    assert [r["id"] for r in rows] == [str(e.id) for e in expected]
    assert rows[-1]["hash"] == expected[-1].hash
    # Each line carries what an outside verifier needs to recompute the chain.
    previous = GENESIS_HASH
    for row in rows:
        fields = {k: v for k, v in row.items() if k != "hash"}
        canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(canonical.encode()).hexdigest() == row["hash"]
        assert row["prev_hash"] == previous
        previous = row["hash"]
    assert all(r["action"] != "tenant.created" or r["target_id"] == str(world.tenant_a.pk) for r in rows)


def test_export_csv_with_filters(world, alice_client):
    _record(world.tenant_a, 3, action="csv.only")
    response = alice_client.get("/api/v1/audit-events/export/?format=csv&action=csv.only")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["action"] for r in rows] == ["csv.only"] * 3
    assert [int(r["seq"]) for r in rows] == sorted(int(r["seq"]) for r in rows)
    assert json.loads(rows[0]["changes"]) == {}


def test_export_refuses_unknown_format_and_foreign_readers(world, alice_client, bob_client):
    response = alice_client.get("/api/v1/audit-events/export?format=xml")
    assert response.status_code == 400
    assert list(response.json()["error"]["fields"]) == ["format"]
    assert bob_client.get("/api/v1/audit-events/export").status_code == 403


def test_request_context_is_recorded(world, alice_client):
    bob_membership_id = str(world.bob.memberships.get().pk)
    alice_client.patch(
        f"/api/v1/members/{bob_membership_id}/",
        {"role": "operator"},
        format="json",
        HTTP_USER_AGENT="falcon-tests/1.0",
        HTTP_X_REQUEST_ID="req-1234567890",
    )
    event = AuditEvent.objects.get(action="member.role_changed")
    assert event.user_agent == "falcon-tests/1.0"
    assert event.request_id == "req-1234567890"
    assert event.ip == "127.0.0.1"
    assert event.actor_type == "user"
    assert event.actor_label == "alice@a.example"
