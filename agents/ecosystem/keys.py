"""What the ecosystem's protocol endpoints share: programs authenticate with an API key that may run
agents (``Authorization: Bearer flk_…``, the ``run`` scope); sessions and cookies are not accepted."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions as drf_exceptions
from rest_framework.request import Request
from rest_framework.views import APIView

from tenants.access import TenantContext, tenant_context_resolve
from tenants.authentication import ApiKeyAuthentication
from tenants.permissions import Action


class RunKeyView(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes: list[Any] = []
    ctx: TenantContext

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if request.auth is None:
            raise drf_exceptions.NotAuthenticated("Send your Falcon API key: Authorization: Bearer flk_…")
        self.ctx = tenant_context_resolve(request)
        self.ctx.require(Action.AGENTS_RUN)
