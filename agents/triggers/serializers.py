"""Shapes of triggers and their deliveries in the API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from agents.triggers.models import Trigger, TriggerEvent
from agents.triggers.services import trigger_address, trigger_url
from falcon.api import ShownOnceMixin, StrictSerializer


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
        return trigger_url(trigger)

    def get_address(self, trigger: Trigger) -> str | None:
        return trigger_address(trigger)


class TriggerCreatedSerializer(ShownOnceMixin, TriggerSerializer):
    once_fields = ("signing_secret",)
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
        fields = ["id", "received_at", "accepted", "code", "message", "delivery_id", "run", "count"]
        read_only_fields = fields


# --- the prompt library ---
