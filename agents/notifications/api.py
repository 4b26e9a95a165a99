"""``/api/v1/notification-channels/``, ``/api/v1/notifications/`` (what was sent, to whom, how it went)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.request import Request
from rest_framework.response import Response

from agents.notifications import services as notification_services
from agents.notifications.models import Notification, NotificationChannel
from agents.notifications.serializers import (
    NotificationChannelCreatedSerializer,
    NotificationChannelCreateSerializer,
    NotificationChannelSerializer,
    NotificationSerializer,
)
from tenants.api.base import TenantScopedViewSet
from tenants.api.views import TENANT_HEADER_PARAMETER
from tenants.permissions import Action


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class NotificationChannelViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = NotificationChannel.objects.order_by("name")
    serializer_class = NotificationChannelSerializer
    required_actions = {
        "list": Action.TENANT_READ,
        "retrieve": Action.TENANT_READ,
        "create": Action.TENANT_MANAGE,
        "destroy": Action.TENANT_MANAGE,
    }

    @extend_schema(
        request=NotificationChannelCreateSerializer, responses={201: NotificationChannelCreatedSerializer}
    )
    def create(self, request: Request) -> Response:
        body = NotificationChannelCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        channel, secret = notification_services.channel_create(
            tenant=self.ctx.tenant, actor=self.ctx.actor, **body.validated_data
        )
        shown = {"signing_secret": secret}
        return Response(
            NotificationChannelCreatedSerializer(channel, context=shown).data, status=status.HTTP_201_CREATED
        )

    def destroy(self, request: Request, pk: str) -> Response:
        notification_services.channel_delete(channel=self.get_object(), actor=self.ctx.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class NotificationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Notification.objects.prefetch_related("deliveries__channel")
    serializer_class = NotificationSerializer
    rights_path = "agent"  # a notification about an agent is seen by who may see the agent
    required_actions = {"list": Action.RUNS_READ, "retrieve": Action.RUNS_READ}
