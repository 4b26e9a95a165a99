"""The billing app's exceptions (each maps to its HTTP status through ``FalconError``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing.plans import USD_METRICS
from falcon.errors import FalconError


def json_value(value: Any) -> Any:
    """A figure as JSON carries it (amounts of money as exact decimal strings)."""
    return str(value) if isinstance(value, Decimal) else value


def _show(metric: str, value: Any) -> str:
    if value is None:
        return "unlimited"
    return f"${value}" if metric in USD_METRICS else f"{value:,}" if isinstance(value, int) else str(value)


class QuotaExceeded(FalconError):
    """A metered quota of this period is used up (429): names the metric, its limit and the usage."""

    status_code = 429
    default_code = "quota_exceeded"

    def __init__(self, metric: str, limit: Any, used: Any, *, message: str | None = None) -> None:
        self.metric = metric
        self.limit = limit
        self.used = used
        super().__init__(
            message
            or f"The {metric} quota of this period is used up ({_show(metric, used)} of "
            f"{_show(metric, limit)}); it renews at the next period or with a larger plan.",
        )

    @property
    def details(self) -> dict[str, Any]:
        return {"metric": self.metric, "limit": json_value(self.limit), "used": json_value(self.used)}


class PlanLimitReached(FalconError):
    """The plan does not allow this (402): a count limit, a schedule interval or a feature."""

    status_code = 402
    default_code = "plan_limit"

    def __init__(
        self, metric: str, limit: Any, used: Any = None, *, message: str, field: str | None = None
    ) -> None:
        self.metric = metric
        self.limit = limit
        self.used = used
        super().__init__(message, field=field)

    @property
    def details(self) -> dict[str, Any]:
        return {"metric": self.metric, "limit": json_value(self.limit), "used": json_value(self.used)}


class BillingNotConfigured(FalconError):
    status_code = 503
    default_code = "billing_not_configured"

    def __init__(self) -> None:
        super().__init__(
            "Billing is not configured on this installation (no STRIPE_SECRET_KEY); an operator sets "
            "plans with `manage.py plan_set`."
        )


class BillingError(FalconError):
    status_code = 502
    default_code = "billing_provider_error"


class WebhookSignatureInvalid(FalconError):
    status_code = 400
    default_code = "bad_signature"


class RateLimited(FalconError):
    status_code = 429
    default_code = "rate_limited"

    def __init__(self, limit: int, wait: float | None, metric: str) -> None:
        super().__init__(f"Too many requests: {metric} allows {limit}; retry in {int(wait or 1)} s.")
        self.limit = limit
        self.metric = metric
        self.wait = wait

    @property
    def details(self) -> dict[str, object]:
        return {"metric": self.metric, "limit": self.limit}
