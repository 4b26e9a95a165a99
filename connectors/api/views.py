"""REST endpoints for connectors and connector kinds."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from connectors import services
from connectors.api.serializers import (
    ConnectorCreateSerializer,
    ConnectorSerializer,
    ConnectorUpdateSerializer,
)
from connectors.kinds import KINDS
from connectors.models import Connector
from tenants.api.base import TenantScopedViewSet
from tenants.api.views import TENANT_HEADER_PARAMETER
from tenants.permissions import Action


class ConnectorKindListView(APIView):
    """Every connector kind's fields (secret ones marked writeOnly), for the dashboard and generators."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response({"results": [kind.schema() for kind in KINDS.values()]})


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class ConnectorViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Connector.objects.order_by("name")
    serializer_class = ConnectorSerializer
    required_actions = {
        "list": Action.AGENTS_READ,
        "retrieve": Action.AGENTS_READ,
        "create": Action.CONNECTORS_MANAGE,
        "partial_update": Action.CONNECTORS_MANAGE,
        "destroy": Action.CONNECTORS_MANAGE,
        "test": Action.CONNECTORS_MANAGE,
    }

    @extend_schema(request=ConnectorCreateSerializer, responses={201: ConnectorSerializer})
    def create(self, request: Request) -> Response:
        body = ConnectorCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        connector = services.connector_create(
            tenant=self.ctx.tenant, actor=self.ctx.actor, created_by=self.ctx.user, **body.validated_data
        )
        services.connector_discover(connector)
        return Response(ConnectorSerializer(connector).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ConnectorUpdateSerializer, responses=ConnectorSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        connector = self.get_object()
        body = ConnectorUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        connector = services.connector_update(
            connector=connector, actor=self.ctx.actor, **body.validated_data
        )
        services.connector_discover(connector)
        return Response(ConnectorSerializer(connector).data)

    def destroy(self, request: Request, pk: str) -> Response:
        services.connector_delete(connector=self.get_object(), actor=self.ctx.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["post"])
    def test(self, request: Request, pk: str) -> Response:
        result: dict[str, Any] = services.connector_test(connector=self.get_object(), actor=self.ctx.actor)
        return Response(result)
