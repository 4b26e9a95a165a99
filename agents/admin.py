"""The compliance console's agent pages: agents, versions (with the diff to the previous one), runs with
their step timeline, prompts with versions, reviews and label history, triggers, notifications and
variables — read-only. Inputs, outputs, definitions and templates are a tenant's data: they open only
for the Compliance group, with a reason, on the tenant's record (``tenants.admin_breakglass``).

Platform staff edit model prices here (the one writable page)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from agents.llm import prices
from agents.llm.models import ModelPrice
from agents.notifications.models import Notification, NotificationChannel, NotificationDelivery
from agents.prompts.models import Prompt, PromptLabel, PromptLabelMove, PromptVersion
from agents.runs.models import Run, StepRun
from agents.triggers.models import Trigger, TriggerEvent
from agents.workflows import services as agent_services
from agents.workflows.models import Agent, AgentVersion, Variable
from falcon.admin_base import ReadOnlyAdmin, ReadOnlyInline, pretty_json
from tenants.admin_breakglass import BreakGlassAdmin, BreakGlassInline
from tenants.staff_access import staff_actor

DATE = admin.DateFieldListFilter


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    """The one writable page: every save and delete is on the platform's audit chain."""

    list_display = ["model", "input_usd_per_mtok", "output_usd_per_mtok", "updated_at"]
    search_fields = ["model"]
    actions = None  # no bulk delete: one audited delete at a time

    def save_model(self, request: HttpRequest, obj: ModelPrice, form: Any, change: bool) -> None:
        prices.model_price_save(price=obj, actor=staff_actor(request, request.user))  # type: ignore[arg-type]

    def delete_model(self, request: HttpRequest, obj: ModelPrice) -> None:
        prices.model_price_delete(price=obj, actor=staff_actor(request, request.user))  # type: ignore[arg-type]


# --- agents and versions --------------------------------------------------------------------------------


class VersionInline(ReadOnlyInline):
    model = AgentVersion
    fk_name = "agent"
    fields = ("number", "note", "created_by", "created_at", "published_at")
    readonly_fields = fields
    ordering = ("-number",)


@admin.register(Agent)
class AgentAdmin(ReadOnlyAdmin):
    list_display = ["name", "tenant", "published_version", "archived_at", "created_at"]
    list_filter = ["tenant", ("created_at", DATE), ("archived_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "tenant__slug"]
    list_select_related = ["tenant", "published_version"]
    date_hierarchy = "created_at"
    fields = ("id", "tenant", "name", "description", "published_version", "created_by", "created_at",
              "updated_at", "archived_at")  # fmt: skip
    readonly_fields = fields
    inlines = [VersionInline]


@admin.register(AgentVersion)
class AgentVersionAdmin(BreakGlassAdmin):
    object_type = "agent_version"
    payload_fields = ("definition_shown", "diff_to_previous", "tests_shown")
    list_display = ["agent", "number", "tenant", "note", "created_by", "created_at", "published_at"]
    list_filter = ["tenant", ("created_at", DATE), ("published_at", admin.EmptyFieldListFilter)]
    search_fields = ["agent__name", "note", "tenant__slug"]
    list_select_related = ["agent", "tenant", "created_by"]
    date_hierarchy = "created_at"
    fields = ("id", "tenant", "agent", "number", "note", "created_by", "created_at", "published_at",
              "definition_shown", "diff_to_previous", "tests_shown")  # fmt: skip

    @admin.display(description="definition")
    def definition_shown(self, version: AgentVersion) -> str:
        return pretty_json(version.definition)

    @admin.display(description="tests")
    def tests_shown(self, version: AgentVersion) -> str:
        return pretty_json(version.tests)

    @admin.display(description="diff to the previous version")
    def diff_to_previous(self, version: AgentVersion) -> str:
        previous = (
            AgentVersion.objects.filter(agent_id=version.agent_id, number__lt=version.number)
            .order_by("-number")
            .first()
        )
        if previous is None:
            return "— (the first version)"
        diff = agent_services.version_diff(old=previous, new=version)
        return format_html("<pre style='white-space:pre-wrap;margin:0'>{}</pre>", diff or "(no change)")


# --- runs and their steps -----------------------------------------------------------------------------


class StepInline(BreakGlassInline):
    model = StepRun
    fk_name = "run"
    base_fields = ("key", "kind", "status", "attempt", "model", "prompt_tokens", "completion_tokens",
                   "cost_usd", "latency_ms", "started_at", "finished_at")  # fmt: skip
    payload_fields = ("input", "output", "error")
    ordering = ("created_at", "id")
    show_change_link = False


@admin.register(Run)
class RunAdmin(BreakGlassAdmin):
    object_type = "run"
    payload_fields = ("input_shown", "output_shown", "error_shown")
    list_display = ["id", "agent", "tenant", "status", "trigger", "created_at", "prompt_tokens",
                    "completion_tokens", "cost_usd"]  # fmt: skip
    list_filter = ["status", "trigger", "tenant", ("created_at", DATE)]
    search_fields = ["agent__name", "tenant__slug"]
    list_select_related = ["agent", "tenant"]
    date_hierarchy = "created_at"
    fields = ("id", "tenant", "agent", "version", "status", "trigger", "trigger_ref", "actor_label",
              "actor_type", "created_at", "started_at", "finished_at", "prompt_tokens", "completion_tokens",
              "cost_usd", "trace_id", "input_shown", "output_shown", "error_shown")  # fmt: skip
    inlines = [StepInline]

    @admin.display(description="input")
    def input_shown(self, run: Run) -> str:
        return pretty_json(run.input)

    @admin.display(description="output")
    def output_shown(self, run: Run) -> str:
        return pretty_json(run.output)

    @admin.display(description="error")
    def error_shown(self, run: Run) -> str:
        return pretty_json(run.error)


# --- prompts -------------------------------------------------------------------------------------------


class PromptVersionInline(ReadOnlyInline):
    model = PromptVersion
    fields = ("number", "status", "author_label", "created_at", "reviewed_by", "reviewed_at")
    readonly_fields = fields
    ordering = ("-number",)


class LabelInline(ReadOnlyInline):
    model = PromptLabel
    fields = ("name", "version", "protected", "updated_at")
    readonly_fields = fields
    show_change_link = False


class LabelMoveInline(ReadOnlyInline):
    model = PromptLabelMove
    fields = ("label", "from_number", "to_number", "moved_by", "moved_at")
    readonly_fields = fields
    ordering = ("-moved_at",)
    show_change_link = False


@admin.register(Prompt)
class PromptAdmin(ReadOnlyAdmin):
    list_display = ["name", "tenant", "created_at", "updated_at"]
    list_filter = ["tenant", ("created_at", DATE)]
    search_fields = ["name", "tenant__slug"]
    list_select_related = ["tenant"]
    fields = ("id", "tenant", "name", "description", "created_by", "created_at", "updated_at")
    readonly_fields = fields
    inlines = [PromptVersionInline, LabelInline, LabelMoveInline]


@admin.register(PromptVersion)
class PromptVersionAdmin(BreakGlassAdmin):
    object_type = "prompt_version"
    payload_fields = ("template", "system", "input_variables", "model_parameters")
    list_display = ["prompt", "number", "tenant", "status", "author_label", "reviewed_by", "reviewed_at"]
    list_filter = ["status", "tenant", ("created_at", DATE)]
    search_fields = ["prompt__name", "tenant__slug"]
    list_select_related = ["prompt", "tenant", "reviewed_by"]
    fields = ("id", "tenant", "prompt", "number", "status", "commit_message", "author_label", "created_at",
              "submitted_at", "reviewed_by", "reviewed_at", "review_comment", "template", "system",
              "input_variables", "model_parameters")  # fmt: skip


# --- triggers, notifications, variables ----------------------------------------------------------------


class TriggerEventInline(ReadOnlyInline):
    model = TriggerEvent
    fields = ("received_at", "accepted", "code", "message", "count", "run")
    readonly_fields = fields
    ordering = ("-received_at",)
    show_change_link = False

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).order_by("-received_at")


@admin.register(Trigger)
class TriggerAdmin(ReadOnlyAdmin):
    list_display = ["name", "kind", "agent", "tenant", "enabled", "disabled_reason", "last_fired_at"]
    list_filter = ["kind", "enabled", "tenant", ("created_at", DATE)]
    search_fields = ["name", "agent__name", "tenant__slug", "public_id"]
    list_select_related = ["agent", "tenant"]
    # Never the signing secrets (kept encrypted); the configuration holds none.
    fields = ("id", "tenant", "agent", "name", "kind", "enabled", "disabled_reason", "public_id", "config",
              "input_mapping", "created_by", "created_at", "updated_at", "last_fired_at")  # fmt: skip
    readonly_fields = fields
    inlines = [TriggerEventInline]


@admin.register(NotificationChannel)
class NotificationChannelAdmin(ReadOnlyAdmin):
    list_display = ["name", "kind", "tenant", "enabled", "created_at"]
    list_filter = ["kind", "enabled", "tenant"]
    search_fields = ["name", "tenant__slug"]
    list_select_related = ["tenant"]
    exclude = ["secret", "config"]  # a channel's URL and signing secret are the tenant's secrets


class DeliveryInline(ReadOnlyInline):
    model = NotificationDelivery
    fields = ("channel", "recipient", "status", "attempts", "error", "sent_at")
    readonly_fields = fields
    show_change_link = False


@admin.register(Notification)
class NotificationAdmin(BreakGlassAdmin):
    object_type = "notification"
    payload_fields = ("body", "data")
    list_display = ["subject", "event", "tenant", "agent", "count", "created_at"]
    list_filter = ["event", "tenant", ("created_at", DATE)]
    search_fields = ["subject", "tenant__slug"]
    list_select_related = ["tenant", "agent"]
    fields = ("id", "tenant", "event", "agent", "subject", "count", "runs", "created_at", "body", "data")
    inlines = [DeliveryInline]


@admin.register(Variable)
class VariableAdmin(ReadOnlyAdmin):
    """Names only: values are the tenant's data."""

    list_display = ["name", "tenant", "description", "updated_at"]
    list_filter = ["tenant"]
    search_fields = ["name", "tenant__slug"]
    list_select_related = ["tenant"]
    exclude = ["value"]
