"""API rate limiting (loaded by DRF's settings, so it must not import rest_framework.views)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

from billing.errors import RateLimited
from billing.plans import Metric
from billing.quotas import plan_limit

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView

PLAN_RATE_TTL_S = 30.0
_plan_rates: dict[Any, tuple[int, float]] = {}


def _plan_rate(tenant_id: Any) -> int:
    """The tenant's plan rate, cached briefly per process (a plan change applies within 30 s)."""
    cached = _plan_rates.get(tenant_id)
    now = time.monotonic()
    if cached is not None and cached[1] > now:
        return cached[0]
    rate = int(plan_limit(tenant_id, Metric.API_REQUESTS_PER_MINUTE))
    _plan_rates[tenant_id] = (rate, now + PLAN_RATE_TTL_S)
    return rate


class ApiRateThrottle(SimpleRateThrottle):
    """Requests per API key at its tenant plan's ``api_requests_per_minute``; people signed in to the
    dashboard (and anonymous callers, per IP) at ``FALCON_API_RATE``."""

    scope = "api"

    def get_rate(self) -> str | None:
        return str(settings.FALCON_API_RATE)

    def allow_request(self, request: Request, view: APIView) -> bool:
        auth = request.auth
        if auth is not None and hasattr(auth, "key_hash"):
            self.rate = f"{_plan_rate(getattr(auth, 'tenant_id', None))}/min"
            self.metric = "api_requests_per_minute"
        else:
            self.rate = self.get_rate()
            self.metric = "FALCON_API_RATE"
        self.num_requests, self.duration = self.parse_rate(self.rate)
        if super().allow_request(request, view):
            return True
        raise RateLimited(self.num_requests or 0, self.wait(), self.metric)

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        auth = request.auth
        if auth is not None and hasattr(auth, "key_hash"):
            ident = f"key:{auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return f"throttle:{self.scope}:{ident}"
