"""``GET /api/v1/agents/{id}/export`` and ``POST /api/v1/agents/import`` (see ``bundles``)."""

from __future__ import annotations

import re
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from agents.ecosystem import bundles
from agents.workflows.models import Agent
from falcon.errors import InvalidInput
from tenants.api.base import TenantScopedViewSet
from tenants.api.views import TENANT_HEADER_PARAMETER
from tenants.permissions import Action


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class AgentBundleViewSet(TenantScopedViewSet):
    """An agent as a file: export it, import one (into the caller's tenant)."""

    queryset = Agent.objects.select_related("published_version")
    rights_path = ""
    required_actions = {"export": Action.AGENTS_READ, "import_bundle": Action.AGENTS_BUILD}

    @extend_schema(
        parameters=[OpenApiParameter("versions", str, enum=["all", "published"], required=False)],
        responses={200: dict},
    )
    @action(detail=True, methods=["get"])
    def export(self, request: Request, pk: str) -> Response:
        """The agent as a bundle (JSON): versions, the prompts they name, trigger definitions, and what
        it needs from a tenant by name (connectors, variables, agents). No secret, no variable value."""
        agent = self.get_object()
        bundle = bundles.bundle_export(
            ctx=self.ctx, agent=agent, versions=request.query_params.get("versions", "all")
        )
        filename = re.sub(r"[^A-Za-z0-9._-]+", "-", agent.name).strip("-") or "agent"
        return Response(
            bundle, headers={"Content-Disposition": f'attachment; filename="{filename}.falcon.json"'}
        )

    @extend_schema(request=dict, responses={201: dict})
    @action(detail=False, methods=["post"], url_path="import")
    def import_bundle(self, request: Request) -> Response:
        """Creates the bundle's agent here. The body is the bundle itself, or ``{"bundle": …, "name":
        "a new name", "connectors": {"name in the bundle": "your connector's name"}}``. The answer
        lists what was made and ``todo``: what must be filled in before the agent can run."""
        body: Any = request.data
        if not isinstance(body, dict):
            raise InvalidInput("The body must be a JSON object.", field="bundle")
        raw: Any
        name: Any
        renames: Any
        if "format" in body:
            raw, name, renames = body, None, None
        else:
            raw, name, renames = body.get("bundle"), body.get("name"), body.get("connectors")
        if name is not None and not isinstance(name, str):
            raise InvalidInput("name must be a string.", field="name")
        if renames is not None and not (
            isinstance(renames, dict) and all(isinstance(v, str) for v in renames.values())
        ):
            raise InvalidInput(
                "connectors maps names in the bundle to your connectors' names.", field="connectors"
            )
        report = bundles.bundle_import(ctx=self.ctx, raw=raw, name=name, connectors=renames)
        return Response(report, status=status.HTTP_201_CREATED)
