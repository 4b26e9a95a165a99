"""Platform staff edit model prices here; agents and runs are read through the API and dashboard."""

from django.contrib import admin

from agents.llm.models import ModelPrice


@admin.register(ModelPrice)
class ModelPriceAdmin(admin.ModelAdmin):
    list_display = ["model", "input_usd_per_mtok", "output_usd_per_mtok", "updated_at"]
    search_fields = ["model"]
