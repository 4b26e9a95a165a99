"""Shapes of notification channels and notifications in the API."""

from __future__ import annotations

from rest_framework import serializers

from agents.notifications.models import Notification, NotificationChannel, NotificationDelivery
from falcon.api import ShownOnceMixin, StrictSerializer


class NotificationChannelSerializer(serializers.ModelSerializer):
    class Meta:
        model = NotificationChannel
        fields = ["id", "name", "kind", "config", "events", "enabled", "created_at"]
        read_only_fields = fields


class NotificationChannelCreatedSerializer(ShownOnceMixin, NotificationChannelSerializer):
    once_fields = ("signing_secret",)
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
