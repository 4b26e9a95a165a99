from typing import Any

from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from django.utils import timezone

        from billing import registry
        from billing.plans import Metric
        from billing.quotas import PlanLimits
        from connectors.models import Connector
        from tenants import limits
        from tenants.audit import audited_modules_register
        from tenants.models import Invitation, Membership

        limits.limit_policy_register(PlanLimits())
        audited_modules_register("billing.services", "billing.alerts")

        def seats(tenant_id: Any) -> int:
            """Members and pending invitations: an invitation holds a seat until accepted or expired."""
            pending = Invitation.objects.filter(
                tenant_id=tenant_id,
                accepted_at__isnull=True,
                revoked_at__isnull=True,
                expires_at__gt=timezone.now(),
            )
            return Membership.objects.filter(tenant_id=tenant_id).count() + pending.count()

        registry.count_register(Metric.MEMBERS, seats)
        registry.count_register(Metric.CONNECTORS, lambda t: Connector.objects.filter(tenant_id=t).count())
