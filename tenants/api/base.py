"""The one base for tenant-owned API resources: every queryset is scoped to the request's tenant."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Model, QuerySet
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.request import Request
from rest_framework.viewsets import GenericViewSet

from tenants.access import TenantContext, tenant_context_resolve
from tenants.permissions import Action


class TenantScopedViewSet(GenericViewSet):
    """Resolves the tenant, checks the action against the role map, and scopes the queryset.

    Subclasses declare ``queryset`` and ``required_actions`` (viewset action -> ``Action``) and never
    override ``get_queryset``: one place filters by tenant, so no endpoint can forget to. An object of
    another tenant is simply not in the queryset and answers 404 like a missing one.
    """

    required_actions: ClassVar[dict[str, Action]] = {}
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    tenant_field: ClassVar[str] = "tenant"
    ctx: TenantContext

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__} must not override get_queryset; set queryset instead.")

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if self.action is None:
            raise MethodNotAllowed(request.method or "")
        self.ctx = tenant_context_resolve(request)
        try:
            action = self.required_actions[self.action]
        except KeyError as exc:
            raise RuntimeError(f"{type(self).__name__}.{self.action} has no required action") from exc
        self.ctx.require(action)

    def get_queryset(self) -> QuerySet[Model]:
        queryset = super().get_queryset()
        return queryset.filter(**{self.tenant_field: self.ctx.tenant})
