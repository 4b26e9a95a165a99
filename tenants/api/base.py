"""The one base for tenant-owned API resources: every queryset is scoped to the request's tenant."""

from __future__ import annotations

from typing import Any, ClassVar

from django.db.models import Model, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.exceptions import MethodNotAllowed
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.viewsets import GenericViewSet

from falcon.errors import Forbidden, InvalidInput, NotFound
from tenants.access import TenantContext, tenant_context_resolve
from tenants.api.serializers import ObjectRightsSerializer, ObjectRightsUpdateSerializer
from tenants.models import Membership
from tenants.object_access import (
    ACTION_RIGHT,
    may_on_some,
    object_allows,
    object_rights_set,
    rights_listing,
    visible_filter,
)
from tenants.permissions import Action


class TenantScopedViewSet(GenericViewSet):
    """Resolves the tenant, checks the action against the role map, and scopes the queryset.

    Subclasses declare ``queryset`` and ``required_actions`` (viewset action -> ``Action``) and never
    override ``get_queryset``: one place filters by tenant, so no endpoint can forget to. An object of
    another tenant is simply not in the queryset and answers 404 like a missing one.
    """

    required_actions: ClassVar[dict[str, Action]] = {}
    # Per-object rights (tenants/object_access.py): "" when the objects are agents or prompts
    # themselves, "agent" when they belong to one (runs); None when the resource has none.
    rights_path: ClassVar[str | None] = None
    lookup_value_regex = "[0-9a-fA-F-]{36}"
    tenant_field: ClassVar[str] = "tenant"
    ctx: TenantContext

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "get_queryset" in cls.__dict__:
            raise TypeError(f"{cls.__name__} must not override get_queryset; set queryset instead.")

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        if self.action is None or self.action == "metadata":  # OPTIONS: the OpenAPI schema describes us
            raise MethodNotAllowed(request.method or "")
        self.ctx = tenant_context_resolve(request)
        try:
            action = self.required_actions[self.action]
        except KeyError as exc:
            raise RuntimeError(f"{type(self).__name__}.{self.action} has no required action") from exc
        if self.rights_path is not None and action in ACTION_RIGHT and self.action != "create":
            # Object rights may grant what the role does not: the object itself decides (get_object).
            if not may_on_some(self.ctx, action, self._rights_model()):
                self.ctx.require(action)
        else:
            self.ctx.require(action)

    def _rights_model(self) -> type[Model]:
        assert self.queryset is not None
        model: type[Model] = self.queryset.model
        if self.rights_path:
            related = model._meta.get_field(self.rights_path).related_model
            assert isinstance(related, type)
            return related
        return model

    def get_queryset(self) -> QuerySet[Model]:
        queryset = super().get_queryset()
        queryset = queryset.filter(**{self.tenant_field: self.ctx.tenant})
        if self.rights_path is not None:
            narrowing = visible_filter(self.ctx, self._rights_model(), self.rights_path)
            if narrowing is not None:
                queryset = queryset.filter(narrowing)
        return queryset

    def get_object(self) -> Any:
        obj = super().get_object()
        if self.rights_path is not None:
            self.require_on(obj, self.required_actions[self.action])
        return obj

    def named_object(self, model: type[Model], pk: Any, action: Action, *, field: str) -> Any:
        """An object a request body names by id, for ``action``: another tenant's, or one the member
        may not see, answers like a missing one (400 ``not_found`` at ``field``); one they see but may
        not act on is 403. Per-object rights apply as on the object's own routes."""
        queryset = model._default_manager.filter(**{self.tenant_field: self.ctx.tenant})
        narrowing = visible_filter(self.ctx, model)
        if narrowing is not None:
            queryset = queryset.filter(narrowing)
        obj = queryset.filter(pk=pk).first()
        if obj is None:
            raise InvalidInput(f"No {model._meta.verbose_name} with this id.", code="not_found", field=field)
        if action in ACTION_RIGHT and not object_allows(self.ctx, action, obj):
            raise Forbidden(f"This action ({action.value}) is not allowed on this {model._meta.model_name}.")
        return obj

    def require_on(self, obj: Any, action: Action) -> None:
        """The action on this object (per-object rights of agents and prompts; the role elsewhere)."""
        target = getattr(obj, self.rights_path) if self.rights_path else obj
        if self.rights_path is not None and action in ACTION_RIGHT:
            if not object_allows(self.ctx, action, target):
                raise Forbidden(
                    f"This action ({action.value}) is not allowed on this {target._meta.model_name}."
                )
        else:
            self.ctx.require(action)


class ObjectRightsMixin:
    """``GET/PUT .../{id}/permissions`` for resources with per-object rights (agents, prompts).

    The viewset lists ``"permissions"`` in ``required_actions`` (the read right on the object); PUT also
    needs ``members.manage``.
    """

    ctx: TenantContext

    @extend_schema(methods=["GET"], responses=ObjectRightsSerializer(many=True))
    @extend_schema(
        methods=["PUT"], request=ObjectRightsUpdateSerializer, responses=ObjectRightsSerializer(many=True)
    )
    @action(detail=True, methods=["get", "put"])
    def permissions(self, request: Request, pk: str) -> Response:
        """Who may do what on this object: every member's explicit and effective rights; PUT sets one
        member's explicit rights (null: back to the role's)."""
        obj = self.get_object()  # type: ignore[attr-defined]
        if request.method == "PUT":
            self.ctx.require(Action.MEMBERS_MANAGE)
            body = ObjectRightsUpdateSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            membership = (
                Membership.objects.filter(tenant=self.ctx.tenant, pk=body.validated_data["member"])
                .select_related("user")
                .first()
            )
            if membership is None:
                raise NotFound("No such member.", field="member")
            object_rights_set(
                obj=obj, membership=membership, rights=body.validated_data["rights"], actor=self.ctx.actor
            )
        return Response(rights_listing(obj))
