"""REST endpoints for triggers: create, change, enable, rotate the secret, read deliveries."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from agents.triggers import services as trigger_services
from agents.triggers.models import Trigger
from agents.triggers.serializers import (
    TriggerCreatedSerializer,
    TriggerCreateSerializer,
    TriggerEventSerializer,
    TriggerSerializer,
    TriggerUpdateSerializer,
)
from agents.workflows.models import Agent
from falcon.errors import InvalidInput
from tenants.api.base import TenantScopedViewSet
from tenants.api.views import TENANT_HEADER_PARAMETER
from tenants.permissions import Action


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class TriggerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Webhook and schedule triggers of the tenant's agents."""

    queryset = Trigger.objects.select_related("agent").order_by("-created_at")
    serializer_class = TriggerSerializer
    rights_path = "agent"  # a trigger is seen and changed with the rights its agent grants
    required_actions = {
        "list": Action.AGENTS_READ,
        "retrieve": Action.AGENTS_READ,
        "events": Action.RUNS_READ,
        "create": Action.AGENTS_BUILD,
        "partial_update": Action.AGENTS_BUILD,
        "destroy": Action.AGENTS_BUILD,
        "enable": Action.AGENTS_BUILD,
        "disable": Action.AGENTS_BUILD,
        "rotate_secret": Action.AGENTS_BUILD,
    }

    @extend_schema(request=TriggerCreateSerializer, responses={201: TriggerCreatedSerializer})
    def create(self, request: Request) -> Response:
        body = TriggerCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        # Another tenant's agent, or one hidden from this member, is as unknown as a made-up id.
        agent = self.named_object(Agent, data["agent"], Action.AGENTS_BUILD, field="agent")
        trigger, secret = trigger_services.trigger_create(
            agent=agent,
            name=data["name"],
            kind=data["kind"],
            config=data["config"],
            enabled=data["enabled"],
            input_mapping=data["input_mapping"],
            actor=self.ctx.actor,
            created_by=self.ctx.user,
        )
        shown = {"signing_secret": secret}
        return Response(TriggerCreatedSerializer(trigger, context=shown).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=TriggerUpdateSerializer, responses=TriggerSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        trigger = self.get_object()
        body = TriggerUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        trigger = trigger_services.trigger_update(
            trigger=trigger, actor=self.ctx.actor, **body.validated_data
        )
        return Response(TriggerSerializer(trigger).data)

    def destroy(self, request: Request, pk: str) -> Response:
        trigger_services.trigger_delete(trigger=self.get_object(), actor=self.ctx.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=TriggerSerializer)
    @action(detail=True, methods=["post"])
    def enable(self, request: Request, pk: str) -> Response:
        trigger = trigger_services.trigger_update(
            trigger=self.get_object(), actor=self.ctx.actor, enabled=True
        )
        return Response(TriggerSerializer(trigger).data)

    @extend_schema(request=None, responses=TriggerSerializer)
    @action(detail=True, methods=["post"])
    def disable(self, request: Request, pk: str) -> Response:
        trigger = trigger_services.trigger_update(
            trigger=self.get_object(), actor=self.ctx.actor, enabled=False
        )
        return Response(TriggerSerializer(trigger).data)

    @extend_schema(request=None, responses={200: dict})
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request: Request, pk: str) -> Response:
        secret = trigger_services.trigger_rotate_secret(trigger=self.get_object(), actor=self.ctx.actor)
        return Response({"signing_secret": secret, "previous_valid_for_hours": 24})

    @extend_schema(responses=TriggerEventSerializer(many=True))
    @action(detail=True, methods=["get"])
    def events(self, request: Request, pk: str) -> Response:
        trigger = self.get_object()
        raw_limit = request.query_params.get("limit", "100")
        if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= 500:
            raise InvalidInput("limit must be between 1 and 500.", field="limit")
        events = trigger.events.order_by("-received_at")[: int(raw_limit)]
        return Response({"results": TriggerEventSerializer(events, many=True).data})
