"""Shapes of agents, versions, runs and step logs in the API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from agents.models import (
    Agent,
    AgentVersion,
    Notification,
    NotificationChannel,
    NotificationDelivery,
    Prompt,
    PromptLabel,
    PromptLabelMove,
    PromptVersion,
    Run,
    StepRun,
    Trigger,
    TriggerEvent,
    Variable,
)
from falcon.api import StrictSerializer


class AgentSerializer(serializers.ModelSerializer):
    published_version = serializers.IntegerField(
        source="published_version.number", default=None, read_only=True
    )
    archived = serializers.SerializerMethodField()
    created_by = serializers.EmailField(source="created_by.email", default=None, read_only=True)

    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "description",
            "published_version",
            "archived",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_archived(self, agent: Agent) -> bool:
        return agent.archived_at is not None


class AgentCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    definition = serializers.JSONField(
        required=False, help_text="Optional first version (a workflow definition)."
    )


class AgentUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=5000)


class AgentVersionSerializer(serializers.ModelSerializer):
    created_by = serializers.EmailField(source="created_by.email", default=None, read_only=True)
    published = serializers.SerializerMethodField()

    class Meta:
        model = AgentVersion
        fields = [
            "id",
            "number",
            "note",
            "definition",
            "published",
            "published_at",
            "created_by",
            "created_at",
        ]
        read_only_fields = fields

    def get_published(self, version: AgentVersion) -> bool:
        return version.agent.published_version_id == version.pk


class AgentVersionCreateSerializer(StrictSerializer):
    definition = serializers.JSONField()
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


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
            "input",
            "output",
            "error",
            "waiting",
            "prompt_tokens",
            "completion_tokens",
            "cost_usd",
            "claims",
            "prompt_versions",
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


class VariableSerializer(serializers.ModelSerializer):
    class Meta:
        model = Variable
        fields = ["id", "name", "value", "description", "created_at", "updated_at"]
        read_only_fields = fields


class VariableCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=64)
    value = serializers.JSONField()
    description = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class VariableUpdateSerializer(StrictSerializer):
    value = serializers.JSONField(required=False)
    description = serializers.CharField(required=False, allow_blank=True, max_length=500)


class TriggerSerializer(serializers.ModelSerializer):
    agent = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()
    address = serializers.SerializerMethodField()

    class Meta:
        model = Trigger
        fields = [
            "id",
            "name",
            "kind",
            "agent",
            "enabled",
            "disabled_reason",
            "config",
            "input_mapping",
            "public_id",
            "url",
            "address",
            "created_at",
            "updated_at",
            "last_fired_at",
        ]
        read_only_fields = fields

    def get_agent(self, trigger: Trigger) -> dict[str, Any]:
        return {"id": str(trigger.agent_id), "name": trigger.agent.name}

    def get_url(self, trigger: Trigger) -> str | None:
        from django.conf import settings

        if trigger.kind == "email":
            return f"{settings.FALCON_BASE_URL}/hooks/email/{trigger.public_id}"
        return f"{settings.FALCON_BASE_URL}/hooks/{trigger.public_id}" if trigger.kind == "webhook" else None

    def get_address(self, trigger: Trigger) -> str | None:
        from agents.inbound_email import address_of

        return address_of(trigger) if trigger.kind == "email" else None


class TriggerCreatedSerializer(TriggerSerializer):
    signing_secret = serializers.CharField(
        read_only=True, allow_null=True, help_text="Shown once (webhooks): sign deliveries with it."
    )

    class Meta(TriggerSerializer.Meta):
        fields = [*TriggerSerializer.Meta.fields, "signing_secret"]
        read_only_fields = fields


class TriggerCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    agent = serializers.UUIDField()
    kind = serializers.ChoiceField(choices=Trigger.Kind.choices)
    enabled = serializers.BooleanField(required=False, default=True)
    config = serializers.DictField(required=False, default=dict)
    input_mapping = serializers.JSONField(required=False, default=None)


class TriggerUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False)
    enabled = serializers.BooleanField(required=False)
    config = serializers.DictField(required=False)
    input_mapping = serializers.JSONField(required=False)


class TriggerEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = TriggerEvent
        fields = ["id", "received_at", "accepted", "code", "message", "delivery_id", "run"]
        read_only_fields = fields


# --- the prompt library ---


class PromptVersionSerializer(serializers.ModelSerializer):
    author = serializers.CharField(source="author_label", read_only=True)
    reviewed_by = serializers.SerializerMethodField()
    labels = serializers.SerializerMethodField()

    class Meta:
        model = PromptVersion
        fields = [
            "number",
            "status",
            "template",
            "system",
            "input_variables",
            "model_parameters",
            "commit_message",
            "author",
            "created_at",
            "submitted_at",
            "reviewed_by",
            "reviewed_at",
            "review_comment",
            "labels",
        ]
        read_only_fields = fields

    def get_reviewed_by(self, version: PromptVersion) -> str | None:
        return version.reviewed_by.email if version.reviewed_by else None

    def get_labels(self, version: PromptVersion) -> list[str]:
        return sorted(label.name for label in version.labels.all())


class PromptLabelSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number", read_only=True)

    class Meta:
        model = PromptLabel
        fields = ["name", "version", "protected", "updated_at"]
        read_only_fields = fields


class PromptSerializer(serializers.ModelSerializer):
    labels = PromptLabelSerializer(many=True, read_only=True)
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Prompt
        fields = ["id", "name", "description", "labels", "latest_version", "created_at", "updated_at"]
        read_only_fields = fields

    def get_latest_version(self, prompt: Prompt) -> int | None:
        numbers = [v.number for v in prompt.versions.all()]
        return max(numbers) if numbers else None


class PromptVersionCreateSerializer(StrictSerializer):
    template = serializers.CharField(trim_whitespace=False)
    system = serializers.CharField(required=False, allow_blank=True, default="", trim_whitespace=False)
    input_variables = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    model_parameters = serializers.DictField(required=False, default=dict)
    commit_message = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)


class PromptCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    version = PromptVersionCreateSerializer(required=False, help_text="An optional first draft.")


class PromptUpdateSerializer(StrictSerializer):
    description = serializers.CharField(allow_blank=True)


class ReviewSerializer(StrictSerializer):
    comment = serializers.CharField(required=False, allow_blank=True, default="")


class LabelMoveSerializer(StrictSerializer):
    version = serializers.IntegerField(min_value=1)
    protected = serializers.BooleanField(required=False, allow_null=True, default=None)


class LabelMoveRecordSerializer(serializers.ModelSerializer):
    class Meta:
        model = PromptLabelMove
        fields = ["label", "from_number", "to_number", "moved_by", "moved_at"]
        read_only_fields = fields


class RenderSerializer(StrictSerializer):
    variables = serializers.DictField(required=False, default=dict)


# --- notifications ---


class NotificationChannelSerializer(serializers.ModelSerializer):
    class Meta:
        model = NotificationChannel
        fields = ["id", "name", "kind", "config", "events", "enabled", "created_at"]
        read_only_fields = fields


class NotificationChannelCreatedSerializer(NotificationChannelSerializer):
    signing_secret = serializers.CharField(read_only=True, allow_null=True, help_text="Shown once (webhook).")

    class Meta(NotificationChannelSerializer.Meta):
        fields = [*NotificationChannelSerializer.Meta.fields, "signing_secret"]
        read_only_fields = fields


class NotificationChannelCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=NotificationChannel.Kind.choices)
    config = serializers.DictField()
    events = serializers.ListField(child=serializers.CharField(), required=False, default=list)


class NotificationDeliverySerializer(serializers.ModelSerializer):
    channel = serializers.CharField(source="channel.name", default=None, read_only=True)

    class Meta:
        model = NotificationDelivery
        fields = ["id", "channel", "recipient", "status", "attempts", "error", "sent_at"]
        read_only_fields = fields


class NotificationSerializer(serializers.ModelSerializer):
    deliveries = NotificationDeliverySerializer(many=True, read_only=True)

    class Meta:
        model = Notification
        fields = [
            "id",
            "event",
            "agent",
            "subject",
            "body",
            "count",
            "runs",
            "data",
            "created_at",
            "deliveries",
        ]
        read_only_fields = fields


class WatchersSerializer(StrictSerializer):
    members = serializers.ListField(child=serializers.UUIDField(), help_text="User ids of members.")
