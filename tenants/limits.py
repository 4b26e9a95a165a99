"""Plan limits as the lower apps see them: tenants and connectors ask, billing answers.

Billing sits above tenants and connectors in the app graph, so they cannot import it. Billing registers
its policy here from ``BillingConfig.ready()``; without one registered every check refuses to guess and
raises, so a missing registration can never mean "unlimited".
"""

from __future__ import annotations

from typing import Protocol
from uuid import UUID

from tenants.models import Tenant

TenantId = UUID | str


class LimitPolicy(Protocol):
    def count_check(self, tenant_id: TenantId, kind: str, *, adding: int = 1) -> None:
        """Raises (402) when ``adding`` more objects of ``kind`` exceed the plan."""

    def over_limit_check(self, tenant_id: TenantId, kind: str) -> None:
        """Raises (402) when the tenant already holds more of ``kind`` than its plan allows."""

    def feature_require(self, tenant_id: TenantId, feature: str, *, field: str | None = None) -> None:
        """Raises (402) when the plan does not include ``feature``."""

    def retention_days_max(self, tenant_id: TenantId) -> int:
        """How long the tenant's plan keeps runs, in days (a tenant may choose less)."""


class _Unregistered:
    def _fail(self) -> None:
        raise RuntimeError("No plan limit policy is registered (billing's AppConfig.ready registers one).")

    def count_check(self, tenant_id: TenantId, kind: str, *, adding: int = 1) -> None:
        self._fail()

    def over_limit_check(self, tenant_id: TenantId, kind: str) -> None:
        self._fail()

    def feature_require(self, tenant_id: TenantId, feature: str, *, field: str | None = None) -> None:
        self._fail()

    def retention_days_max(self, tenant_id: TenantId) -> int:
        self._fail()
        return 0


_policy: LimitPolicy = _Unregistered()


def limit_policy_register(policy: LimitPolicy) -> None:
    global _policy
    _policy = policy


def _tenant_id(tenant: Tenant | TenantId) -> TenantId:
    return tenant.pk if isinstance(tenant, Tenant) else tenant


def count_check(tenant: Tenant | TenantId, kind: str, *, adding: int = 1) -> None:
    _policy.count_check(_tenant_id(tenant), kind, adding=adding)


def over_limit_check(tenant: Tenant | TenantId, kind: str) -> None:
    _policy.over_limit_check(_tenant_id(tenant), kind)


def feature_require(tenant: Tenant | TenantId, feature: str, *, field: str | None = None) -> None:
    _policy.feature_require(_tenant_id(tenant), feature, field=field)


def retention_days_max(tenant: Tenant | TenantId) -> int:
    return _policy.retention_days_max(_tenant_id(tenant))
