"""API rate limiting (loaded by DRF's settings, so it must not import rest_framework.views)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

if TYPE_CHECKING:
    from rest_framework.request import Request
    from rest_framework.views import APIView


class ApiRateThrottle(SimpleRateThrottle):
    """Requests per API key (or signed-in user, or client IP) at ``FALCON_API_RATE``.

    The billing issue replaces the single rate with the tenant's plan limit.
    """

    scope = "api"

    def get_rate(self) -> str | None:
        return str(settings.FALCON_API_RATE)

    def get_cache_key(self, request: Request, view: APIView) -> str | None:
        auth = request.auth
        if auth is not None and hasattr(auth, "key_hash"):
            ident = f"key:{auth.pk}"
        elif request.user and request.user.is_authenticated:
            ident = f"user:{request.user.pk}"
        else:
            ident = f"ip:{self.get_ident(request)}"
        return f"throttle:{self.scope}:{ident}"
