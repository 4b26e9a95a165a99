"""REST endpoints for tenants, members, invitations, API keys and the audit log."""

from __future__ import annotations

from typing import Any, cast

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from falcon.errors import Forbidden
from tenants import limits, services
from tenants.access import TENANT_HEADER, actor_for_user
from tenants.api.base import TenantScopedViewSet
from tenants.api.serializers import (
    ApiKeyCreatedSerializer,
    ApiKeyCreateSerializer,
    ApiKeySerializer,
    AuditEventFilterSerializer,
    AuditEventSerializer,
    AuditExportQuerySerializer,
    InvitationAcceptSerializer,
    InvitationCreatedSerializer,
    InvitationCreateSerializer,
    InvitationSerializer,
    MemberSerializer,
    MemberUpdateSerializer,
    TenantCreateSerializer,
    TenantSerializer,
    TenantUpdateSerializer,
    TenantWithRoleSerializer,
)
from tenants.audit_export import audit_export_response, audit_filter
from tenants.models import ApiKey, AuditEvent, Invitation, Membership, Tenant, User
from tenants.permissions import Action
from tenants.selectors import tenants_with_role

TENANT_HEADER_PARAMETER = OpenApiParameter(
    TENANT_HEADER,
    str,
    OpenApiParameter.HEADER,
    required=False,
    description="The tenant's slug, for signed-in users (API keys carry their tenant).",
)


def _session_user(request: Request) -> User:
    """The signed-in person; API keys act inside one tenant and cannot use person-only endpoints."""
    if not isinstance(request.user, User):
        raise Forbidden("This endpoint is for signed-in users, not API keys.", code="session_required")
    return request.user


class TenantListView(APIView):
    """The tenants the caller belongs to; a signed-in user may create more."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        responses=inline_serializer("TenantList", {"results": TenantWithRoleSerializer(many=True)})
    )
    def get(self, request: Request) -> Response:
        if isinstance(request.auth, ApiKey):
            tenants = tenants_with_role(tenant_id=request.auth.tenant_id)
        else:
            tenants = tenants_with_role(user=_session_user(request))
        return Response({"results": TenantWithRoleSerializer(tenants, many=True).data})

    @extend_schema(request=TenantCreateSerializer, responses={201: TenantWithRoleSerializer})
    def post(self, request: Request) -> Response:
        user = _session_user(request)
        body = TenantCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        tenant = services.tenant_create(
            slug=body.validated_data["slug"],
            name=body.validated_data["name"],
            owner=user,
            actor=actor_for_user(request, user),
        )
        created = tenants_with_role(user=user).get(pk=tenant.pk)
        return Response(TenantWithRoleSerializer(created).data, status=status.HTTP_201_CREATED)


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class CurrentTenantViewSet(TenantScopedViewSet):
    """``/api/v1/tenant``: the tenant the request acts in."""

    queryset = Tenant.objects.all()
    tenant_field = "pk"
    serializer_class = TenantSerializer
    required_actions = {"retrieve": Action.TENANT_READ, "partial_update": Action.TENANT_MANAGE}

    def retrieve(self, request: Request) -> Response:
        return Response(TenantSerializer(self.ctx.tenant).data)

    @extend_schema(request=TenantUpdateSerializer, responses=TenantSerializer)
    def partial_update(self, request: Request) -> Response:
        body = TenantUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if {"require_mfa", "prompt_four_eyes", "audit_run_starts", "retention_days"} & set(
            body.validated_data
        ):
            self.ctx.require(Action.TENANT_SECURITY)
        tenant = services.tenant_update(
            tenant=self.ctx.tenant, actor=self.ctx.actor, acting_user=self.ctx.user, **body.validated_data
        )
        return Response(TenantSerializer(tenant).data)


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class MemberViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Membership.objects.select_related("user")
    serializer_class = MemberSerializer
    required_actions = {
        "list": Action.MEMBERS_READ,
        "retrieve": Action.MEMBERS_READ,
        "partial_update": Action.MEMBERS_READ,  # refined below: leaving is for anyone, the rest for managers
        "destroy": Action.MEMBERS_READ,
    }

    @extend_schema(request=MemberUpdateSerializer, responses=MemberSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        membership = self.get_object()
        self.ctx.require(Action.MEMBERS_MANAGE)
        body = MemberUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        if "role" in body.validated_data:
            membership = services.member_role_change(
                membership=membership,
                role=body.validated_data["role"],
                actor=self.ctx.actor,
                acting_role=self.ctx.role,
            )
        if "granted_only" in body.validated_data:
            membership = services.member_granted_only_set(
                membership=membership, granted_only=body.validated_data["granted_only"], actor=self.ctx.actor
            )
        return Response(MemberSerializer(membership).data)

    def destroy(self, request: Request, pk: str) -> Response:
        membership = self.get_object()
        is_self = self.ctx.user is not None and membership.user_id == self.ctx.user.pk
        if not is_self:
            self.ctx.require(Action.MEMBERS_MANAGE)
        services.member_remove(
            membership=membership, actor=self.ctx.actor, acting_role=self.ctx.role, is_self=is_self
        )
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class InvitationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Invitation.objects.select_related("invited_by")
    serializer_class = InvitationSerializer
    required_actions = {
        "list": Action.MEMBERS_MANAGE,
        "retrieve": Action.MEMBERS_MANAGE,
        "create": Action.MEMBERS_MANAGE,
        "destroy": Action.MEMBERS_MANAGE,
    }

    @extend_schema(request=InvitationCreateSerializer, responses={201: InvitationCreatedSerializer})
    def create(self, request: Request) -> Response:
        body = InvitationCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        invitation, token = services.invitation_create(
            tenant=self.ctx.tenant,
            email=body.validated_data["email"],
            role=body.validated_data["role"],
            actor=self.ctx.actor,
            acting_role=self.ctx.role,
            invited_by=self.ctx.user,
        )
        shown = {"token": token, "accept_url": services.invitation_accept_url(token)}
        return Response(
            InvitationCreatedSerializer(invitation, context=shown).data, status=status.HTTP_201_CREATED
        )

    def destroy(self, request: Request, pk: str) -> Response:
        services.invitation_revoke(invitation=self.get_object(), actor=self.ctx.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class InvitationAcceptView(APIView):
    """Joins the tenant an invitation is for; the token names the tenant, so no tenant header."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=InvitationAcceptSerializer, responses={201: TenantWithRoleSerializer})
    def post(self, request: Request) -> Response:
        user = _session_user(request)
        body = InvitationAcceptSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        membership = services.invitation_accept(
            token=body.validated_data["token"], user=user, actor=actor_for_user(request, user)
        )
        joined = tenants_with_role(user=user).get(pk=membership.tenant_id)
        return Response(TenantWithRoleSerializer(joined).data, status=status.HTTP_201_CREATED)


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = ApiKey.objects.select_related("created_by")
    serializer_class = ApiKeySerializer
    required_actions = {
        "list": Action.API_KEYS_MANAGE,
        "retrieve": Action.API_KEYS_MANAGE,
        "create": Action.API_KEYS_MANAGE,
        "destroy": Action.API_KEYS_MANAGE,
    }

    @extend_schema(request=ApiKeyCreateSerializer, responses={201: ApiKeyCreatedSerializer})
    def create(self, request: Request) -> Response:
        body = ApiKeyCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key, token = services.api_key_create(
            tenant=self.ctx.tenant,
            name=body.validated_data["name"],
            scopes=body.validated_data["scopes"],
            expires_at=body.validated_data.get("expires_at"),
            actor=self.ctx.actor,
            acting_role=self.ctx.role,
            created_by=self.ctx.user,
        )
        return Response(
            ApiKeyCreatedSerializer(key, context={"key": token}).data, status=status.HTTP_201_CREATED
        )

    def destroy(self, request: Request, pk: str) -> Response:
        services.api_key_revoke(api_key=self.get_object(), actor=self.ctx.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class AuditCursorPagination(CursorPagination):
    ordering = "-seq"
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 500


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class AuditEventViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = AuditEvent.objects.all()
    serializer_class = AuditEventSerializer
    pagination_class = AuditCursorPagination
    required_actions = {"list": Action.AUDIT_READ, "retrieve": Action.AUDIT_READ, "export": Action.AUDIT_READ}

    def filter_queryset(self, queryset: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:  # type: ignore[override]
        if self.action != "list":
            return queryset
        params = AuditEventFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        return audit_filter(queryset, params.validated_data)

    @extend_schema(parameters=[AuditEventFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(
        parameters=[AuditExportQuerySerializer],
        responses={(200, "application/jsonl"): str, (200, "text/csv"): str},
    )
    @action(detail=False, methods=["get"])
    def export(self, request: Request) -> StreamingHttpResponse:
        """The filtered log, oldest first, streamed as JSON Lines or CSV (plans with audit export)."""
        limits.feature_require(self.ctx.tenant, "audit_export")
        params = AuditExportQuerySerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        fmt = params.validated_data.pop("format")
        scoped = cast("QuerySet[AuditEvent]", self.get_queryset())
        return audit_export_response(self.ctx.tenant, audit_filter(scoped, params.validated_data), fmt)
