"""Shapes of runs and step logs in the API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from agents.runs.models import Run, StepRun
from falcon.api import StrictSerializer


class RunStartSerializer(StrictSerializer):
    input = serializers.JSONField(required=False, default=dict)
    wait_s = serializers.FloatField(required=False, default=0, min_value=0, max_value=60)
    idempotency_key = serializers.CharField(required=False, max_length=200)


class RunResumeSerializer(StrictSerializer):
    decision = serializers.JSONField(help_text='e.g. "approve", "reject", or any JSON the workflow expects.')
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)


class StepRunSerializer(serializers.ModelSerializer):
    cost_usd = serializers.DecimalField(
        max_digits=14, decimal_places=8, coerce_to_string=True, read_only=True
    )

    class Meta:
        model = StepRun
        fields = [
            "id",
            "key",
            "step_id",
            "step_type",
            "kind",
            "parent_key",
            "attempt",
            "claim",
            "status",
            "input",
            "output",
            "error",
            "model",
            "provider",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "latency_ms",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class RunSerializer(serializers.ModelSerializer):
    agent = serializers.SerializerMethodField()
    version = serializers.IntegerField(source="version.number", read_only=True)
    cost_usd = serializers.DecimalField(
        max_digits=14, decimal_places=8, coerce_to_string=True, read_only=True
    )
    waiting = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "agent",
            "version",
            "status",
            "trigger",
            "trigger_ref",
            "rerun_of",
            "idempotency_key",
            "actor_label",
            "actor_type",
            "actor_id",
            "input",
            "output",
            "error",
            "waiting",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "claims",
            "prompt_versions",
            "trace_id",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_agent(self, run: Run) -> dict[str, Any]:
        return {"id": str(run.agent_id), "name": run.agent.name}

    def get_waiting(self, run: Run) -> dict[str, Any] | None:
        if run.status != Run.Status.WAITING:
            return None
        return {
            "step": run.waiting_step,
            "prompt": run.wait_prompt or None,
            "resume_at": run.resume_at.isoformat() if run.resume_at else None,
        }


class RunDetailSerializer(RunSerializer):
    steps = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "steps"]
        read_only_fields = fields

    def get_steps(self, run: Run) -> list[dict[str, Any]]:
        rows = run.steps.order_by("created_at", "id")
        return StepRunSerializer(rows, many=True).data  # type: ignore[return-value]


class RunFilterSerializer(serializers.Serializer):
    agent = serializers.UUIDField(required=False)
    status = serializers.ChoiceField(choices=Run.Status.choices, required=False)
    trigger = serializers.ChoiceField(choices=Run.Trigger.choices, required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
