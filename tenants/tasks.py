"""Periodic checks of the tenants app."""

from __future__ import annotations

import logging

from celery import shared_task

from tenants.audit import PLATFORM, audit_verify_platform, audit_verify_tenant
from tenants.models import Tenant

logger = logging.getLogger(__name__)


@shared_task(acks_late=True, ignore_result=False)
def audit_verify_all_task() -> dict[str, str]:
    """Verifies every tenant's audit chain; a broken one is logged at ERROR with the first bad row."""
    results: dict[str, str] = {}
    for tenant in Tenant.objects.order_by("slug").iterator():
        broken = audit_verify_tenant(tenant)
        if broken is None:
            results[tenant.slug] = "ok"
        else:
            results[tenant.slug] = f"broken at #{broken.seq} ({broken.event_id}): {broken.reason}"
            logger.error(
                "Audit chain of tenant %s is broken at #%s (%s): %s",
                tenant.slug,
                broken.seq,
                broken.event_id,
                broken.reason,
            )
    broken = audit_verify_platform()
    results[PLATFORM] = (
        "ok" if broken is None else f"broken at #{broken.seq} ({broken.event_id}): {broken.reason}"
    )
    if broken is not None:
        logger.error(
            "The platform's audit chain is broken at #%s (%s): %s", broken.seq, broken.event_id, broken.reason
        )
    return results
