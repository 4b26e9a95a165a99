"""Shapes of agents, versions, variables and watchers in the API."""

from __future__ import annotations

from rest_framework import serializers

from agents.workflows.models import Agent, AgentVersion, Variable
from falcon.api import StrictSerializer


class AgentSerializer(serializers.ModelSerializer):
    published_version = serializers.IntegerField(
        source="published_version.number", default=None, read_only=True, allow_null=True
    )
    archived = serializers.SerializerMethodField()
    created_by = serializers.EmailField(
        source="created_by.email", default=None, read_only=True, allow_null=True
    )

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
    created_by = serializers.EmailField(
        source="created_by.email", default=None, read_only=True, allow_null=True
    )
    published = serializers.SerializerMethodField()

    class Meta:
        model = AgentVersion
        fields = [
            "id",
            "number",
            "note",
            "tests",
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


class WatchersSerializer(StrictSerializer):
    members = serializers.ListField(child=serializers.UUIDField(), help_text="User ids of members.")
