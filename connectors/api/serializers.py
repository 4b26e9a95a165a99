"""Connectors in the API: secrets are write-only (responses say configured and show 4 characters at most)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from connectors.models import Connector
from falcon.api import StrictSerializer


class ConnectorSerializer(serializers.ModelSerializer):
    secrets = serializers.SerializerMethodField()

    class Meta:
        model = Connector
        fields = [
            "id",
            "name",
            "kind",
            "config",
            "secrets",
            "created_at",
            "updated_at",
            "last_tested_at",
            "last_test_ok",
            "catalogue",
            "catalogue_at",
        ]
        read_only_fields = fields

    def get_secrets(self, connector: Connector) -> dict[str, Any]:
        return {
            field: {"configured": True, "last4": connector.secret_hints.get(field, "")}
            for field in sorted(connector.secrets)
        }


class ConnectorCreateSerializer(StrictSerializer):
    name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", max_length=64)
    kind = serializers.CharField(max_length=32)
    config = serializers.DictField(required=False, default=dict)
    secrets = serializers.DictField(
        child=serializers.CharField(allow_blank=True, trim_whitespace=False), required=False, default=dict
    )


class ConnectorUpdateSerializer(StrictSerializer):
    name = serializers.RegexField(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", max_length=64, required=False)
    config = serializers.DictField(required=False)
    secrets = serializers.DictField(
        child=serializers.CharField(allow_blank=True, allow_null=True, trim_whitespace=False), required=False
    )
