"""The compliance console: read-only views of tenants, memberships, API keys and the audit log.

Nothing here changes state: every change goes through a service, which audits it. The "Compliance"
group (created by a migration) holds only the view permissions these pages need.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest

from falcon.admin_base import ReadOnlyAdmin
from tenants.models import ApiKey, AuditEvent, Invitation, Membership, StaffAccess, Tenant, User
from tenants.operator import user_operator_change, user_snapshot
from tenants.staff_access import staff_actor


class MembershipInline(admin.TabularInline):
    model = Membership
    fields = ("user", "role", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Tenant)
class TenantAdmin(ReadOnlyAdmin):
    list_display = ["slug", "name", "require_mfa", "created_at"]
    search_fields = ["slug", "name"]
    list_filter = ["require_mfa"]
    inlines = [MembershipInline]


@admin.register(Membership)
class MembershipAdmin(ReadOnlyAdmin):
    list_display = ["user", "tenant", "role", "created_at"]
    list_filter = ["role"]
    search_fields = ["user__email", "tenant__slug"]
    list_select_related = ["user", "tenant"]


@admin.register(Invitation)
class InvitationAdmin(ReadOnlyAdmin):
    list_display = ["email", "tenant", "role", "created_at", "expires_at", "accepted_at", "revoked_at"]
    exclude = ["token_hash"]
    search_fields = ["email", "tenant__slug"]
    list_select_related = ["tenant"]


@admin.register(ApiKey)
class ApiKeyAdmin(ReadOnlyAdmin):
    list_display = [
        "name",
        "prefix",
        "tenant",
        "scopes",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    ]
    exclude = ["key_hash"]
    search_fields = ["name", "prefix", "tenant__slug"]
    list_select_related = ["tenant"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["occurred_at", "tenant", "seq", "action", "actor_label", "target_type", "target_id", "ip"]
    list_filter = ["action", "actor_type", "target_type", ("occurred_at", admin.DateFieldListFilter)]
    search_fields = ["action", "actor_label", "actor_id", "target_id", "request_id", "tenant__slug"]
    list_select_related = ["tenant"]
    date_hierarchy = "occurred_at"
    ordering = ["-occurred_at"]
    show_full_result_count = False


@admin.register(StaffAccess)
class StaffAccessAdmin(ReadOnlyAdmin):
    """Every time platform staff opened a tenant's data, and why (also in each tenant's audit log)."""

    list_display = ["granted_at", "user", "tenant", "object_type", "object_id", "reason", "expires_at"]
    list_filter = ["object_type", "tenant", ("granted_at", admin.DateFieldListFilter)]
    search_fields = ["user__email", "object_id", "reason", "tenant__slug"]
    list_select_related = ["user", "tenant"]
    date_hierarchy = "granted_at"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ["email"]
    list_display = ["email", "name", "is_staff", "is_active", "date_joined"]
    search_fields = ["email", "name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Profile", {"fields": ("name",)}),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    filter_horizontal = ("groups",)
    actions = None

    # Deactivating a person (is_active) is the operator action; every change is audited, and nobody is
    # deleted here (their audit trail and authorship stay).
    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        stored = User.objects.filter(pk=obj.pk).first() if change else None
        obj._falcon_before = user_snapshot(stored) if stored is not None else None  # type: ignore[attr-defined]
        super().save_model(request, obj, form, change)

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        user_operator_change(user=obj, before=None, actor=staff_actor(request, request.user))  # type: ignore[arg-type]
        return super().log_addition(request, obj, message)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        before = getattr(obj, "_falcon_before", None)
        actor = staff_actor(request, request.user)  # type: ignore[arg-type]
        if before is None:  # the password form: no other field changes there
            user_operator_change(user=obj, before=user_snapshot(obj), actor=actor, password_set=True)
        else:
            user_operator_change(user=obj, before=before, actor=actor)
        return super().log_change(request, obj, message)


# --- third-party pages: read-only here too (changes go through services; MFA secrets never shown) -----

from allauth.account.models import EmailAddress  # noqa: E402
from allauth.mfa.models import Authenticator  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django_celery_beat import models as beat  # noqa: E402

for _model in (EmailAddress, Authenticator, Group, beat.PeriodicTask, beat.IntervalSchedule,
               beat.CrontabSchedule, beat.SolarSchedule, beat.ClockedSchedule):  # fmt: skip
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)


@admin.register(EmailAddress)
class EmailAddressAdmin(ReadOnlyAdmin):
    list_display = ["email", "user", "verified", "primary"]
    search_fields = ["email"]
    list_select_related = ["user"]


@admin.register(Group)
class GroupAdmin(ReadOnlyAdmin):
    """Who is in a group is set on the user's page (an audited operator action)."""

    list_display = ["name"]
    filter_horizontal = ["permissions"]


@admin.register(beat.PeriodicTask)
class PeriodicTaskAdmin(ReadOnlyAdmin):
    """Schedules are made by schedule triggers and the platform's own beat entries; read here."""

    list_display = ["name", "task", "enabled", "last_run_at", "total_run_count"]
    list_filter = ["enabled"]
    search_fields = ["name", "task"]
