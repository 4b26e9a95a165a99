"""The nightly chain verification, run by a real Celery worker over Redis."""

from __future__ import annotations

from django.db import connection

from tenants.models import AuditEvent
from tenants.tasks import audit_verify_all_task


def test_worker_verifies_every_chain_and_reports_the_broken_one(world, celery_worker):
    assert audit_verify_all_task.delay().get(timeout=30) == {
        "tenant-a": "ok",
        "tenant-b": "ok",
        "platform": "ok",
    }

    victim = AuditEvent.objects.get(tenant=world.tenant_b, seq=1)
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE tenants_auditevent DISABLE TRIGGER tenants_auditevent_append_only")
        cursor.execute("UPDATE tenants_auditevent SET actor_label = 'nobody' WHERE id = %s", [victim.pk])
        cursor.execute("ALTER TABLE tenants_auditevent ENABLE TRIGGER tenants_auditevent_append_only")

    result = audit_verify_all_task.delay().get(timeout=30)
    assert result["tenant-a"] == "ok"
    assert result["tenant-b"].startswith(f"broken at #1 ({victim.pk})")
