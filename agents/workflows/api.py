"""REST endpoints for agents, their versions and watchers, and tenant variables."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.engine.spec import workflow_json_schema
from agents.workflows import services as agent_services
from agents.workflows import variables as variable_services
from agents.workflows.models import Agent, AgentVersion, AgentWatcher, Variable
from agents.workflows.serializers import (
    AgentCreateSerializer,
    AgentSerializer,
    AgentUpdateSerializer,
    AgentVersionCreateSerializer,
    AgentVersionSerializer,
    VariableCreateSerializer,
    VariableSerializer,
    VariableUpdateSerializer,
    WatchersSerializer,
)
from billing.api.views import SpendCapSerializer
from billing.models import AgentSpendCap
from billing.services import agent_spend_cap_set
from falcon.errors import InvalidInput, NotFound
from tenants.api.base import ObjectRightsMixin, TenantScopedViewSet
from tenants.api.views import TENANT_HEADER_PARAMETER
from tenants.permissions import Action


class WorkflowSchemaView(APIView):
    """The JSON Schema of workflow definitions (public: it describes a format, not data)."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(responses={200: dict})
    def get(self, request: Request) -> Response:
        return Response(workflow_json_schema())


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class AgentViewSet(ObjectRightsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Agent.objects.select_related("published_version", "created_by").order_by("-created_at")
    serializer_class = AgentSerializer
    rights_path = ""
    required_actions = {
        "list": Action.AGENTS_READ,
        "retrieve": Action.AGENTS_READ,
        "create": Action.AGENTS_BUILD,
        "partial_update": Action.AGENTS_BUILD,
        "destroy": Action.AGENTS_BUILD,
        "archive": Action.AGENTS_BUILD,
        "unarchive": Action.AGENTS_BUILD,
        "versions": Action.AGENTS_READ,
        "version_detail": Action.AGENTS_READ,
        "version_publish": Action.AGENTS_PUBLISH,
        "version_diff": Action.AGENTS_READ,
        "spend_cap": Action.BILLING_READ,  # PUT also needs billing.spend_caps
        "permissions": Action.AGENTS_READ,  # PUT also needs members.manage
        "watchers": Action.AGENTS_READ,  # PUT also needs the edit right on the agent
    }

    @extend_schema(request=AgentCreateSerializer, responses={201: AgentSerializer})
    def create(self, request: Request) -> Response:
        body = AgentCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        agent = agent_services.agent_create(
            tenant=self.ctx.tenant,
            name=body.validated_data["name"],
            description=body.validated_data["description"],
            definition=body.validated_data.get("definition"),
            actor=self.ctx.actor,
            created_by=self.ctx.user,
            member=self.ctx.membership,
        )
        return Response(
            AgentSerializer(self.get_queryset().get(pk=agent.pk)).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(request=AgentUpdateSerializer, responses=AgentSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        agent = self.get_object()
        body = AgentUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        agent_services.agent_update(agent=agent, actor=self.ctx.actor, **body.validated_data)
        return Response(AgentSerializer(self.get_queryset().get(pk=agent.pk)).data)

    def destroy(self, request: Request, pk: str) -> Response:
        """Archives the agent (versions and runs are kept)."""
        agent_services.agent_archive(agent=self.get_object(), actor=self.ctx.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=AgentSerializer)
    @action(detail=True, methods=["post"])
    def archive(self, request: Request, pk: str) -> Response:
        agent = agent_services.agent_archive(agent=self.get_object(), actor=self.ctx.actor)
        return Response(AgentSerializer(self.get_queryset().get(pk=agent.pk)).data)

    @extend_schema(request=None, responses=AgentSerializer)
    @action(detail=True, methods=["post"])
    def unarchive(self, request: Request, pk: str) -> Response:
        agent = agent_services.agent_archive(agent=self.get_object(), actor=self.ctx.actor, archived=False)
        return Response(AgentSerializer(self.get_queryset().get(pk=agent.pk)).data)

    @extend_schema(methods=["GET"], responses=SpendCapSerializer)
    @extend_schema(methods=["PUT"], request=SpendCapSerializer, responses=SpendCapSerializer)
    @action(detail=True, methods=["get", "put"], url_path="spend-cap")
    def spend_cap(self, request: Request, pk: str) -> Response:
        """The agent's monthly LLM spend cap in USD (null: none; the organization's cap still applies)."""
        agent = self.get_object()
        if request.method == "PUT":
            self.ctx.require(Action.SPEND_CAPS_MANAGE)
            body = SpendCapSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            agent_spend_cap_set(
                tenant_id=agent.tenant_id,
                agent_id=agent.pk,
                monthly_usd=body.validated_data["monthly_usd"],
                actor=self.ctx.actor,
            )
        cap = AgentSpendCap.objects.filter(agent=agent).values_list("monthly_usd", flat=True).first()
        return Response({"monthly_usd": None if cap is None else str(cap)})

    @extend_schema(methods=["GET"], responses=dict)
    @extend_schema(methods=["PUT"], request=WatchersSerializer, responses=dict)
    @action(detail=True, methods=["get", "put"])
    def watchers(self, request: Request, pk: str) -> Response:
        """Members e-mailed when this agent's runs fail or time out."""
        agent = self.get_object()
        if request.method == "PUT":
            self.require_on(agent, Action.AGENTS_BUILD)
            body = WatchersSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            agent_services.watchers_set(
                agent=agent, user_ids=body.validated_data["members"], actor=self.ctx.actor
            )
        emails = sorted(AgentWatcher.objects.filter(agent=agent).values_list("user__email", flat=True))
        return Response({"watchers": emails})

    # --- versions ---

    def _version(self, agent: Agent, number: str) -> AgentVersion:
        version = agent.versions.select_related("agent", "created_by").filter(number=int(number)).first()
        if version is None:
            raise NotFound()
        return version

    @extend_schema(
        methods=["POST"], request=AgentVersionCreateSerializer, responses={201: AgentVersionSerializer}
    )
    @extend_schema(methods=["GET"], responses=AgentVersionSerializer(many=True))
    @action(detail=True, methods=["get", "post"])
    def versions(self, request: Request, pk: str) -> Response:
        agent = self.get_object()
        if request.method == "POST":
            self.require_on(agent, Action.AGENTS_BUILD)
            body = AgentVersionCreateSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            version = agent_services.version_create(
                agent=agent,
                definition=body.validated_data["definition"],
                note=body.validated_data["note"],
                actor=self.ctx.actor,
                created_by=self.ctx.user,
                member=self.ctx.membership,
            )
            version = self._version(agent, str(version.number))
            return Response(AgentVersionSerializer(version).data, status=status.HTTP_201_CREATED)
        versions = agent.versions.select_related("agent", "created_by").order_by("-number")
        page = self.paginate_queryset(versions)
        return self.get_paginated_response(AgentVersionSerializer(page, many=True).data)

    @extend_schema(responses=AgentVersionSerializer)
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<number>[0-9]{1,9})")
    def version_detail(self, request: Request, pk: str, number: str) -> Response:
        return Response(AgentVersionSerializer(self._version(self.get_object(), number)).data)

    @extend_schema(request=None, responses=AgentVersionSerializer)
    @action(detail=True, methods=["post"], url_path=r"versions/(?P<number>[0-9]{1,9})/publish")
    def version_publish(self, request: Request, pk: str, number: str) -> Response:
        agent = self.get_object()
        agent_services.version_publish(version=self._version(agent, number), actor=self.ctx.actor)
        return Response(AgentVersionSerializer(self._version(self.get_object(), number)).data)

    @extend_schema(
        parameters=[OpenApiParameter("from", int, required=True), OpenApiParameter("to", int, required=True)],
        responses={200: dict},
    )
    @action(detail=True, methods=["get"], url_path="versions/diff")
    def version_diff(self, request: Request, pk: str) -> Response:
        agent = self.get_object()
        numbers = {}
        for param in ("from", "to"):
            raw = request.query_params.get(param, "")
            if not raw.isdigit():
                raise InvalidInput(f"'{param}' must be a version number.", field=param)
            numbers[param] = raw
        old, new = self._version(agent, numbers["from"]), self._version(agent, numbers["to"])
        return Response(
            {"from": old.number, "to": new.number, "diff": agent_services.version_diff(old=old, new=new)}
        )


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class VariableViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Tenant variables that templates read as ``env.<name>``."""

    queryset = Variable.objects.all()
    serializer_class = VariableSerializer
    required_actions = {
        "list": Action.AGENTS_READ,
        "retrieve": Action.AGENTS_READ,
        "create": Action.AGENTS_BUILD,
        "partial_update": Action.AGENTS_BUILD,
        "destroy": Action.AGENTS_BUILD,
    }

    @extend_schema(request=VariableCreateSerializer, responses={201: VariableSerializer})
    def create(self, request: Request) -> Response:
        body = VariableCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        variable = variable_services.variable_create(
            tenant=self.ctx.tenant, actor=self.ctx.actor, **body.validated_data
        )
        return Response(VariableSerializer(variable).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=VariableUpdateSerializer, responses=VariableSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        variable = self.get_object()
        body = VariableUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        variable = variable_services.variable_update(
            variable=variable, actor=self.ctx.actor, **body.validated_data
        )
        return Response(VariableSerializer(variable).data)

    def destroy(self, request: Request, pk: str) -> Response:
        variable_services.variable_delete(variable=self.get_object(), actor=self.ctx.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)
