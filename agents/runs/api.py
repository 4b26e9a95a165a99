"""REST endpoints for runs: start one of an agent, list, read, cancel, resume, re-run."""

from __future__ import annotations

import json
from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from agents.errors import TooManyStreams
from agents.runs import events as run_events
from agents.runs import services as run_services
from agents.runs.models import Run
from agents.runs.serializers import (
    RunDetailSerializer,
    RunFilterSerializer,
    RunResumeSerializer,
    RunSerializer,
    RunStartSerializer,
)
from agents.workflows.models import Agent
from tenants.api.base import TenantScopedViewSet
from tenants.api.views import TENANT_HEADER_PARAMETER
from tenants.permissions import Action


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class AgentRunViewSet(TenantScopedViewSet):
    """``POST /agents/{id}/runs``: the runs side of an agent (its other routes are in workflows)."""

    queryset = Agent.objects.select_related("published_version")
    rights_path = ""
    required_actions = {"runs": Action.AGENTS_RUN}

    @extend_schema(
        request=RunStartSerializer,
        responses={200: RunDetailSerializer, 202: RunSerializer},
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
    )
    @action(detail=True, methods=["post"])
    def runs(self, request: Request, pk: str) -> Response:
        """Starts a run of the published version; ``wait_s`` waits for it to finish (else 202)."""
        agent = self.get_object()
        body = RunStartSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        key = body.validated_data.get("idempotency_key") or request.headers.get("Idempotency-Key")
        run, _ = run_services.run_start(
            agent=agent,
            input=body.validated_data["input"],
            actor=self.ctx.actor,
            trigger=Run.Trigger.API if self.ctx.api_key else Run.Trigger.MANUAL,
            idempotency_key=key,
        )
        return _run_response(run.pk, body.validated_data["wait_s"])


def _run_response(run_id: Any, wait_s: float) -> Response:
    run = run_services.run_wait(run_id, wait_s)
    if run.status in Run.FINISHED:
        return Response(RunDetailSerializer(run).data, status=status.HTTP_200_OK)
    return Response(RunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class EventStreamRenderer(BaseRenderer):
    """``text/event-stream`` for the events route; its errors are still JSON."""

    media_type = "text/event-stream"
    format = "sse"
    charset = None

    def render(
        self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None
    ) -> bytes:
        return json.dumps(data).encode()


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Run.objects.select_related("agent", "version")
    serializer_class = RunSerializer
    rights_path = "agent"
    required_actions = {
        "list": Action.RUNS_READ,
        "retrieve": Action.RUNS_READ,
        "cancel": Action.AGENTS_RUN,
        "resume": Action.AGENTS_RUN,
        "rerun": Action.AGENTS_RUN,
        "events": Action.RUNS_READ,
    }

    def get_serializer_class(self) -> Any:
        return RunDetailSerializer if self.action == "retrieve" else RunSerializer

    def filter_queryset(self, queryset: QuerySet[Run]) -> QuerySet[Run]:  # type: ignore[override]
        if self.action != "list":
            return queryset
        params = RunFilterSerializer(data=self.request.query_params)
        params.is_valid(raise_exception=True)
        data = params.validated_data
        if "agent" in data:
            queryset = queryset.filter(agent_id=data["agent"])
        if "status" in data:
            queryset = queryset.filter(status=data["status"])
        if "trigger" in data:
            queryset = queryset.filter(trigger=data["trigger"])
        if "since" in data:
            queryset = queryset.filter(created_at__gte=data["since"])
        if "until" in data:
            queryset = queryset.filter(created_at__lt=data["until"])
        return queryset

    @extend_schema(parameters=[RunFilterSerializer])
    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().list(request, *args, **kwargs)

    @extend_schema(request=None, responses=RunSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, pk: str) -> Response:
        run = run_services.run_cancel(run=self.get_object(), actor=self.ctx.actor)
        return Response(RunSerializer(self.get_queryset().get(pk=run.pk)).data)

    @extend_schema(request=RunResumeSerializer, responses=RunSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request: Request, pk: str) -> Response:
        run = self.get_object()
        body = RunResumeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = run_services.run_resume(
            run=run,
            decision=body.validated_data["decision"],
            comment=body.validated_data["comment"],
            actor=self.ctx.actor,
        )
        return Response(RunSerializer(self.get_queryset().get(pk=run.pk)).data)

    @extend_schema(request=None, responses={202: RunSerializer})
    @action(detail=True, methods=["post"])
    def rerun(self, request: Request, pk: str) -> Response:
        run = run_services.run_rerun(run=self.get_object(), actor=self.ctx.actor)
        return _run_response(run.pk, 0)

    @extend_schema(
        request=None,
        responses={(200, "text/event-stream"): OpenApiTypes.STR},
        parameters=[OpenApiParameter("Last-Event-ID", str, OpenApiParameter.HEADER, required=False)],
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer, EventStreamRenderer])
    def events(self, request: Request, pk: str) -> HttpResponseBase:
        """Server-sent events of the run until it ends (agents/runs/events.py lists them)."""
        run = self.get_object()
        refused = run_events.limits.acquire(run.tenant_id)
        if refused is not None:
            raise TooManyStreams(refused)
        stream = run_events.RunEventStream(
            run, run_events.parse_last_event_id(request.headers.get("Last-Event-ID"))
        )
        response = StreamingHttpResponse(stream, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
        return response
