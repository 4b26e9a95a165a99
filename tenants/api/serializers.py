"""Shapes of tenants, members, invitations, API keys and audit events in the API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from falcon.api import ShownOnceMixin, StrictSerializer
from tenants.models import ApiKey, AuditEvent, Invitation, Membership, Tenant, User
from tenants.permissions import Role, Scope


class TenantSerializer(serializers.ModelSerializer):
    class Meta:
        model = Tenant
        fields = [
            "id",
            "slug",
            "name",
            "require_mfa",
            "prompt_four_eyes",
            "audit_run_starts",
            "retention_days",
            "legal_hold",
            "created_at",
        ]
        read_only_fields = fields

    legal_hold = serializers.SerializerMethodField(
        help_text="Set by the platform's operators: while it holds, retention deletes nothing."
    )

    def get_legal_hold(self, tenant: Tenant) -> dict[str, Any] | None:
        if tenant.legal_hold_at is None:
            return None
        return {"since": tenant.legal_hold_at.isoformat(), "reason": tenant.legal_hold_reason}


class TenantWithRoleSerializer(TenantSerializer):
    role = serializers.CharField(
        read_only=True,
        allow_null=True,
        help_text="The caller's role; null for an API key (keys act by scope).",
    )

    class Meta(TenantSerializer.Meta):
        fields = [*TenantSerializer.Meta.fields, "role"]
        read_only_fields = fields


class TenantCreateSerializer(StrictSerializer):
    slug = serializers.CharField(max_length=50)
    name = serializers.CharField(max_length=200)


class TenantUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    require_mfa = serializers.BooleanField(required=False)
    prompt_four_eyes = serializers.BooleanField(required=False)
    audit_run_starts = serializers.BooleanField(required=False)
    retention_days = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, help_text="Within the plan's limit; null: the plan's."
    )


class UserSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "email", "name"]
        read_only_fields = fields


class MemberSerializer(serializers.ModelSerializer):
    user = UserSummarySerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "user", "role", "granted_only", "created_at"]
        read_only_fields = fields


class MemberUpdateSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices, required=False)
    granted_only = serializers.BooleanField(
        required=False, help_text="Agents and prompts: only those with explicit rights."
    )


class ObjectRightsSerializer(serializers.Serializer):
    member = serializers.UUIDField()
    email = serializers.EmailField()
    role = serializers.CharField()
    granted_only = serializers.BooleanField()
    explicit = serializers.ListField(child=serializers.CharField(), allow_null=True)
    effective = serializers.ListField(child=serializers.CharField())


class ObjectRightsUpdateSerializer(StrictSerializer):
    member = serializers.UUIDField()
    rights = serializers.ListField(
        child=serializers.ChoiceField(choices=["view", "edit", "publish", "run"]), allow_null=True
    )


class InvitationSerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True)
    invited_by = serializers.EmailField(
        source="invited_by.email", read_only=True, default=None, allow_null=True
    )

    class Meta:
        model = Invitation
        fields = [
            "id",
            "email",
            "role",
            "status",
            "invited_by",
            "created_at",
            "expires_at",
            "accepted_at",
            "revoked_at",
        ]
        read_only_fields = fields


class InvitationCreatedSerializer(ShownOnceMixin, InvitationSerializer):
    once_fields = ("token", "accept_url")
    token = serializers.CharField(read_only=True, help_text="Shown once; the invitee also gets it by e-mail.")
    accept_url = serializers.CharField(read_only=True)

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "token", "accept_url"]
        read_only_fields = fields


class InvitationCreateSerializer(StrictSerializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationAcceptSerializer(StrictSerializer):
    token = serializers.CharField(max_length=200)


class ApiKeySerializer(serializers.ModelSerializer):
    status = serializers.CharField(read_only=True)
    created_by = serializers.EmailField(
        source="created_by.email", read_only=True, default=None, allow_null=True
    )

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "name",
            "prefix",
            "scopes",
            "status",
            "created_by",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
        ]
        read_only_fields = fields


class ApiKeyCreatedSerializer(ShownOnceMixin, ApiKeySerializer):
    once_fields = ("key",)
    key = serializers.CharField(read_only=True, help_text="The secret. Shown once: store it now.")

    class Meta(ApiKeySerializer.Meta):
        fields = [*ApiKeySerializer.Meta.fields, "key"]
        read_only_fields = fields


class ApiKeyCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=Scope.choices), min_length=1)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "seq",
            "occurred_at",
            "actor_type",
            "actor_id",
            "actor_label",
            "action",
            "target_type",
            "target_id",
            "changes",
            "ip",
            "user_agent",
            "request_id",
            "prev_hash",
            "hash",
        ]
        read_only_fields = fields


class AuditEventFilterSerializer(serializers.Serializer):
    """Query parameters of the audit log list and export."""

    actor = serializers.CharField(required=False, max_length=64, help_text="Actor id (user or API key).")
    actor_type = serializers.ChoiceField(choices=AuditEvent.ActorType.choices, required=False)
    action = serializers.CharField(
        required=False, max_length=64, help_text="Exact action, or a prefix ending in '.*' (e.g. member.*)."
    )
    target_type = serializers.CharField(required=False, max_length=64)
    target_id = serializers.CharField(required=False, max_length=64)
    since = serializers.DateTimeField(required=False, help_text="Inclusive lower bound (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="Exclusive upper bound (ISO 8601).")

    def validate(self, attrs: dict[str, object]) -> dict[str, object]:
        since, until = attrs.get("since"), attrs.get("until")
        if since and until and since >= until:  # type: ignore[operator]
            raise serializers.ValidationError({"until": ["Must be after since."]})
        return attrs


class AuditExportQuerySerializer(AuditEventFilterSerializer):
    format = serializers.ChoiceField(choices=["jsonl", "csv"], default="jsonl")
