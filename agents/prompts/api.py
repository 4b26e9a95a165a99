"""``/api/v1/prompts/``: the governed prompt library (versions, review, labels, diff, render)."""

from __future__ import annotations

from typing import Any

from django.db.models import Prefetch
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from agents.prompts import services as prompt_services
from agents.prompts.models import Prompt, PromptLabel, PromptVersion
from agents.prompts.serializers import (
    LabelMoveRecordSerializer,
    LabelMoveSerializer,
    PromptCreateSerializer,
    PromptLabelSerializer,
    PromptSerializer,
    PromptUpdateSerializer,
    PromptVersionCreateSerializer,
    PromptVersionSerializer,
    RenderSerializer,
    ReviewSerializer,
)
from falcon.errors import InvalidInput, NotFound
from tenants.api.base import ObjectRightsMixin, TenantScopedViewSet
from tenants.api.views import TENANT_HEADER_PARAMETER
from tenants.models import User
from tenants.permissions import Action

VERSION = r"versions/(?P<number>[0-9]{1,9})"


@extend_schema(parameters=[TENANT_HEADER_PARAMETER])
class PromptViewSet(ObjectRightsMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    queryset = Prompt.objects.prefetch_related(
        Prefetch("labels", queryset=PromptLabel.objects.select_related("version")),
        Prefetch("versions", queryset=PromptVersion.objects.only("id", "prompt_id", "number")),
    ).order_by("name")
    serializer_class = PromptSerializer
    rights_path = ""
    required_actions = {
        "list": Action.PROMPTS_READ,
        "retrieve": Action.PROMPTS_READ,
        "create": Action.PROMPTS_EDIT,
        "partial_update": Action.PROMPTS_EDIT,
        "versions": Action.PROMPTS_READ,  # POST also needs prompts.edit
        "version_detail": Action.PROMPTS_READ,
        "version_submit": Action.PROMPTS_EDIT,
        "version_approve": Action.PROMPTS_PUBLISH,
        "version_reject": Action.PROMPTS_PUBLISH,
        "version_render": Action.PROMPTS_READ,
        "diff": Action.PROMPTS_READ,
        "labels": Action.PROMPTS_READ,
        "label_move": Action.PROMPTS_PUBLISH,
        "label_history": Action.PROMPTS_READ,
        "permissions": Action.PROMPTS_READ,  # PUT also needs members.manage
    }

    def _person(self) -> User | None:
        """Who acts, for four eyes: the signed-in person, or the person who created the API key."""
        if self.ctx.user is not None:
            return self.ctx.user
        return self.ctx.api_key.created_by if self.ctx.api_key else None

    def _version(self, prompt: Prompt, number: Any) -> PromptVersion:
        version = (
            PromptVersion.objects.select_related("prompt", "reviewed_by")
            .prefetch_related("labels")
            .filter(prompt=prompt, number=int(number))
            .first()
        )
        if version is None:
            raise NotFound("No such version of this prompt.")
        return version

    def _fresh(self, prompt: Prompt) -> dict[str, Any]:
        return dict(PromptSerializer(self.get_queryset().get(pk=prompt.pk)).data)

    @extend_schema(request=PromptCreateSerializer, responses={201: PromptSerializer})
    def create(self, request: Request) -> Response:
        body = PromptCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        prompt = prompt_services.prompt_create(
            tenant=self.ctx.tenant,
            name=data["name"],
            description=data["description"],
            actor=self.ctx.actor,
            created_by=self.ctx.user,
        )
        if data.get("version"):
            prompt_services.prompt_version_create(
                prompt=prompt, actor=self.ctx.actor, author=self._person(), **data["version"]
            )
        return Response(self._fresh(prompt), status=status.HTTP_201_CREATED)

    @extend_schema(request=PromptUpdateSerializer, responses=PromptSerializer)
    def partial_update(self, request: Request, pk: str) -> Response:
        prompt = self.get_object()
        body = PromptUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        prompt = prompt_services.prompt_update(
            prompt=prompt, description=body.validated_data["description"], actor=self.ctx.actor
        )
        return Response(self._fresh(prompt))

    @extend_schema(
        methods=["POST"], request=PromptVersionCreateSerializer, responses={201: PromptVersionSerializer}
    )
    @extend_schema(methods=["GET"], responses=PromptVersionSerializer(many=True))
    @action(detail=True, methods=["get", "post"])
    def versions(self, request: Request, pk: str) -> Response:
        prompt = self.get_object()
        if request.method == "POST":
            self.require_on(prompt, Action.PROMPTS_EDIT)
            body = PromptVersionCreateSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            version = prompt_services.prompt_version_create(
                prompt=prompt, actor=self.ctx.actor, author=self._person(), **body.validated_data
            )
            return Response(
                PromptVersionSerializer(self._version(prompt, version.number)).data,
                status=status.HTTP_201_CREATED,
            )
        versions = (
            PromptVersion.objects.filter(prompt=prompt)
            .select_related("reviewed_by")
            .prefetch_related("labels")
            .order_by("-number")
        )
        return Response(PromptVersionSerializer(versions, many=True).data)

    @extend_schema(responses=PromptVersionSerializer)
    @action(detail=True, methods=["get"], url_path=VERSION)
    def version_detail(self, request: Request, pk: str, number: str) -> Response:
        return Response(PromptVersionSerializer(self._version(self.get_object(), number)).data)

    @extend_schema(request=None, responses=PromptVersionSerializer)
    @action(detail=True, methods=["post"], url_path=f"{VERSION}/submit")
    def version_submit(self, request: Request, pk: str, number: str) -> Response:
        prompt = self.get_object()
        prompt_services.prompt_version_submit(version=self._version(prompt, number), actor=self.ctx.actor)
        return Response(PromptVersionSerializer(self._version(prompt, number)).data)

    def _review(self, pk: str, number: str, approve: bool) -> Response:
        prompt = self.get_object()
        body = ReviewSerializer(data=self.request.data)
        body.is_valid(raise_exception=True)
        prompt_services.prompt_version_review(
            version=self._version(prompt, number),
            approve=approve,
            comment=body.validated_data["comment"],
            actor=self.ctx.actor,
            reviewer=self._person(),
        )
        return Response(PromptVersionSerializer(self._version(prompt, number)).data)

    @extend_schema(request=ReviewSerializer, responses=PromptVersionSerializer)
    @action(detail=True, methods=["post"], url_path=f"{VERSION}/approve")
    def version_approve(self, request: Request, pk: str, number: str) -> Response:
        return self._review(pk, number, approve=True)

    @extend_schema(request=ReviewSerializer, responses=PromptVersionSerializer)
    @action(detail=True, methods=["post"], url_path=f"{VERSION}/reject")
    def version_reject(self, request: Request, pk: str, number: str) -> Response:
        return self._review(pk, number, approve=False)

    @extend_schema(request=RenderSerializer, responses=dict)
    @action(detail=True, methods=["post"], url_path=f"{VERSION}/render")
    def version_render(self, request: Request, pk: str, number: str) -> Response:
        version = self._version(self.get_object(), number)
        body = RenderSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        return Response(
            prompt_services.prompt_render(version=version, variables=body.validated_data["variables"])
        )

    @extend_schema(
        parameters=[OpenApiParameter("from", int, required=True), OpenApiParameter("to", int, required=True)],
        responses=dict,
    )
    @action(detail=True, methods=["get"], url_path="versions/diff")
    def diff(self, request: Request, pk: str) -> Response:
        prompt = self.get_object()
        try:
            old, new = int(request.query_params["from"]), int(request.query_params["to"])
        except (KeyError, ValueError) as exc:
            raise InvalidInput("Give ?from=<number>&to=<number>.", field="from") from exc
        text = prompt_services.prompt_diff(old=self._version(prompt, old), new=self._version(prompt, new))
        return Response({"from": old, "to": new, "diff": text})

    @extend_schema(responses=PromptLabelSerializer(many=True))
    @action(detail=True, methods=["get"])
    def labels(self, request: Request, pk: str) -> Response:
        labels = (
            PromptLabel.objects.filter(prompt=self.get_object()).select_related("version").order_by("name")
        )
        return Response(PromptLabelSerializer(labels, many=True).data)

    @extend_schema(request=LabelMoveSerializer, responses=PromptLabelSerializer)
    @action(detail=True, methods=["put"], url_path=r"labels/(?P<label>[a-z][a-z0-9_-]{0,49})")
    def label_move(self, request: Request, pk: str, label: str) -> Response:
        prompt = self.get_object()
        body = LabelMoveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        moved = prompt_services.prompt_label_move(
            prompt=prompt,
            label=label,
            version=self._version(prompt, body.validated_data["version"]),
            protected=body.validated_data["protected"],
            actor=self.ctx.actor,
        )
        return Response(
            PromptLabelSerializer(PromptLabel.objects.select_related("version").get(pk=moved.pk)).data
        )

    @extend_schema(responses=LabelMoveRecordSerializer(many=True))
    @action(detail=True, methods=["get"], url_path="labels/history")
    def label_history(self, request: Request, pk: str) -> Response:
        moves = self.get_object().label_moves.order_by("-moved_at")
        return Response(LabelMoveRecordSerializer(moves, many=True).data)
