"""REST endpoints of the Agent Generator: generate, read (with a bounded wait), accept, refine, and
run a version's test cases dry or live."""

from __future__ import annotations

import time
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from agents.generator import services
from agents.generator.models import Generation
from agents.workflows.models import Agent
from falcon.api import StrictSerializer
from falcon.errors import InvalidInput, NotFound
from tenants.api.base import TenantScopedViewSet
from tenants.api.views import TENANT_HEADER_PARAMETER
from tenants.permissions import Action

MAX_WAIT_S = 60.0


class ExampleSerializer(StrictSerializer):
    input = serializers.JSONField()
    output = serializers.JSONField(required=False)


class GenerateSerializer(StrictSerializer):
    description = serializers.CharField(max_length=services.MAX_DESCRIPTION)
    examples = ExampleSerializer(many=True, required=False, default=list)
    trigger = serializers.ChoiceField(choices=services.TRIGGERS, required=False, default="api")
    model = serializers.CharField(required=False, allow_null=True, default=None, max_length=200)
    require_approval_for_writes = serializers.BooleanField(required=False, default=True)


class RefineSerializer(StrictSerializer):
    instruction = serializers.CharField(max_length=services.MAX_DESCRIPTION)
    model = serializers.CharField(required=False, allow_null=True, default=None, max_length=200)
    require_approval_for_writes = serializers.BooleanField(required=False, default=True)


class AcceptSerializer(StrictSerializer):
    agent = serializers.UUIDField(required=False, allow_null=True, default=None)


class VersionTestSerializer(StrictSerializer):
    mode = serializers.ChoiceField(choices=["dry", "live"], required=False, default="dry")


class ProblemSerializer(serializers.Serializer):
    code = serializers.CharField()
    severity = serializers.ChoiceField(choices=["error", "warning"])
    path = serializers.CharField()
    message = serializers.CharField()


class GenerationSerializer(serializers.ModelSerializer):
    problems = ProblemSerializer(many=True, read_only=True)
    base_version = serializers.IntegerField(source="base_version.number", default=None, allow_null=True)
    refines = serializers.UUIDField(source="base_version.agent_id", default=None, allow_null=True)
    accepted_agent = serializers.UUIDField(source="accepted_agent_id", allow_null=True)

    class Meta:
        model = Generation
        fields = [
            "id",
            "status",
            "description",
            "examples",
            "trigger",
            "model",
            "prompt_version",
            "refines",
            "base_version",
            "instruction",
            "name",
            "agent_description",
            "plan",
            "definition",
            "problems",
            "dry_run",
            "tests",
            "attempts",
            "diff",
            "error",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "created_at",
            "finished_at",
            "accepted_agent",
            "accepted_version",
        ]
        read_only_fields = fields


def _wait(generation_id: Any, wait_s: float) -> Generation:
    deadline = time.monotonic() + min(max(wait_s, 0.0), MAX_WAIT_S)
    while True:
        generation = Generation.objects.select_related("base_version").get(pk=generation_id)
        if generation.status in Generation.FINISHED or time.monotonic() >= deadline:
            return generation
        time.sleep(0.1)


def _answer(generation: Generation, wait_s: float = 0) -> Response:
    generation = _wait(generation.pk, wait_s)
    code = status.HTTP_200_OK if generation.status in Generation.FINISHED else status.HTTP_202_ACCEPTED
    return Response(GenerationSerializer(generation).data, status=code)


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class AgentGeneratorViewSet(TenantScopedViewSet):
    """``/agents/generate``, ``/agents/{id}/refine``, ``/agents/{id}/versions/{n}/test``."""

    queryset = Agent.objects.select_related("published_version")
    rights_path = ""
    required_actions = {
        "generate": Action.AGENTS_BUILD,
        "refine": Action.AGENTS_BUILD,
        "test": Action.AGENTS_RUN,
    }

    @extend_schema(request=GenerateSerializer, responses={202: GenerationSerializer})
    @action(detail=False, methods=["post"])
    def generate(self, request: Request) -> Response:
        """Describe an agent; a worker designs, checks, repairs and dry-runs a workflow to review."""
        self.ctx.require(Action.AGENTS_BUILD)
        body = GenerateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        generation = services.generation_request(
            tenant=self.ctx.tenant, actor=self.ctx.actor, created_by=self.ctx.user, **body.validated_data
        )
        return Response(GenerationSerializer(generation).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=RefineSerializer, responses={202: GenerationSerializer})
    @action(detail=True, methods=["post"])
    def refine(self, request: Request, pk: str) -> Response:
        """A generation from the agent's latest version and an instruction; its result has a diff."""
        agent = self.get_object()
        body = RefineSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        generation = services.agent_refine(
            agent=agent, actor=self.ctx.actor, created_by=self.ctx.user, **body.validated_data
        )
        return Response(GenerationSerializer(generation).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=VersionTestSerializer, responses=dict)
    @action(detail=True, methods=["post"], url_path=r"versions/(?P<number>[0-9]{1,9})/test")
    def test(self, request: Request, pk: str, number: str) -> Response:
        """Runs the version's test cases: ``dry`` (simulated, no side effect) or ``live`` (real runs)."""
        agent = self.get_object()
        body = VersionTestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        version = agent.versions.filter(number=int(number)).first()
        if version is None:
            raise NotFound()
        result = services.version_tests_run(
            version=version, mode=body.validated_data["mode"], actor=self.ctx.actor
        )
        return Response(result)


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class GenerationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Generation.objects.select_related("base_version").order_by("-created_at")
    serializer_class = GenerationSerializer
    required_actions = {
        "list": Action.AGENTS_BUILD,
        "retrieve": Action.AGENTS_BUILD,
        "accept": Action.AGENTS_BUILD,
    }

    @extend_schema(parameters=[OpenApiParameter("wait_s", float, required=False)])
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        raw = request.query_params.get("wait_s", "0")
        try:
            wait_s = float(raw)
        except ValueError as exc:
            raise InvalidInput("wait_s is a number of seconds.", field="wait_s") from exc
        return _answer(self.get_object(), wait_s)

    @extend_schema(request=AcceptSerializer, responses={201: dict})
    @action(detail=True, methods=["post"])
    def accept(self, request: Request, pk: str) -> Response:
        """Creates the agent (or a new version of ``agent``) from the generation; nothing is published."""
        generation = self.get_object()
        body = AcceptSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        agent = None
        if body.validated_data["agent"] is not None:
            agent = self.named_object(Agent, body.validated_data["agent"], Action.AGENTS_BUILD, field="agent")
        elif generation.base_version is not None:
            agent = self.named_object(
                Agent, generation.base_version.agent_id, Action.AGENTS_BUILD, field="agent"
            )
        version = services.generation_accept(
            generation=generation, actor=self.ctx.actor, created_by=self.ctx.user, member=self.ctx.membership,
            agent=agent,
        )  # fmt: skip
        return Response(
            {"agent": str(version.agent_id), "version": version.number, "published": False},
            status=status.HTTP_201_CREATED,
        )
