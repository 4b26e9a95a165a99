"""The price table of the LLM gateway (platform staff edit it in the console)."""

from __future__ import annotations

from decimal import Decimal

from django.db import models


class ModelPrice(models.Model):
    """Prices for models LiteLLM's cost map lacks (or an override); edited by platform staff in the admin."""

    model = models.CharField(
        max_length=200, unique=True, help_text="As written in steps, e.g. ollama/llama3.2."
    )
    input_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    output_usd_per_mtok = models.DecimalField(max_digits=12, decimal_places=6, default=Decimal(0))
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.model
