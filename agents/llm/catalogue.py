"""The models a tenant may use: offered by the builder's model picker and told to the Agent Generator."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from agents.engine.spec import provider_of
from agents.llm.gateway import SANDBOX_MODELS, model_check
from connectors.models import Connector

# What a provider connector without an allow-list offers first (any model LiteLLM knows still validates).
SUGGESTED: dict[str, tuple[str, ...]] = {
    "openai": ("openai/gpt-4o-mini", "openai/gpt-4o", "openai/gpt-4.1-mini"),
    "anthropic": ("anthropic/claude-haiku-4-5", "anthropic/claude-sonnet-4-5"),
    "gemini": ("gemini/gemini-2.5-flash", "gemini/gemini-2.5-pro"),
    "ollama": ("ollama/llama3.2",),
}


def models_for_tenant(tenant_id: Any) -> list[str]:
    """Sandbox models, then each provider connector's allowed models (or the suggestions), then the
    providers the platform itself is configured for."""
    models: list[str] = list(SANDBOX_MODELS)
    rows = Connector.objects.filter(tenant_id=tenant_id, kind__in=SUGGESTED).values_list("kind", "config")
    for kind, config in rows:
        models += (config or {}).get("allowed_models") or SUGGESTED[kind]
    for provider, configured in settings.FALCON_LLM_PROVIDERS.items():
        if provider in SUGGESTED and (configured.get("api_key") or configured.get("api_base")):
            models += SUGGESTED[provider]
    return list(dict.fromkeys(models))


def model_refusal(tenant_id: Any, model: str) -> str | None:
    """Why this tenant may not use ``model`` (None when it may): the gateway must know it, and the
    tenant needs a provider connector (whose allow-list admits it) or the platform's own key."""
    if problem := model_check(model):
        return problem
    provider = provider_of(model)
    if provider == "sandbox":
        return None
    kind = "ollama" if provider == "ollama_chat" else provider
    connectors = list(
        Connector.objects.filter(tenant_id=tenant_id, kind=kind).values_list("config", flat=True)
    )
    for config in connectors:
        allowed = (config or {}).get("allowed_models") or []
        if not allowed or model in allowed:
            return None
    if connectors:
        return f"{model} is not among the allowed models of this tenant's {kind} connector"
    configured = settings.FALCON_LLM_PROVIDERS.get(kind, {})
    if configured.get("api_key") or configured.get("api_base"):
        return None
    return f"this tenant has no {kind} connector (and the platform has no {kind} key)"
