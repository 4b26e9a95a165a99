"""Shapes of the prompt library in the API."""

from __future__ import annotations

from rest_framework import serializers

from agents.prompts.models import Prompt, PromptLabel, PromptLabelMove, PromptVersion
from falcon.api import StrictSerializer


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
