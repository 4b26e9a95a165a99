"""LLM provider credentials for the engine's llm and agent steps: OpenAI, Anthropic, Gemini, Ollama."""

from __future__ import annotations

from typing import Any, ClassVar

from connectors import registry
from connectors.errors import ConnectorError
from connectors.kinds.base import Field, Kind, Resolved


class LlmProviderKind(Kind):
    """What the four LLM provider kinds share: a key (or a base URL), allowed models, a default flag."""

    step_types = ("llm", "agent")
    destination_field = "base_url"
    fields: ClassVar[tuple[Field, ...]] = (
        Field("api_key", secret=True, required=True),
        Field("base_url", description="Optional: a proxy or compatible endpoint."),
        Field(
            "allowed_models", "array", default=[], description="If set, only these models (provider/name)."
        ),
        Field("default", "boolean", default=False, description="Used by steps that name no connector."),
    )

    @classmethod
    def credentials(cls, connector: Resolved) -> dict[str, Any]:
        return {
            "api_key": connector.secrets.get("api_key", ""),
            "api_base": connector.config.get("base_url", ""),
            "allowed_models": connector.config.get("allowed_models") or [],
            "policy": connector.policy,
        }

    @classmethod
    def test(cls, connector: Resolved) -> dict[str, Any]:
        """One tiny call through the LLM gateway (registered by agents: connectors cannot import it)."""
        probe = registry.llm_probe()
        if probe is None:
            raise ConnectorError("no LLM gateway is installed to test this connector", code="no_gateway")
        models = connector.config.get("allowed_models") or [cls.test_model]
        return probe(model=models[0], credentials=cls.credentials(connector))

    test_model: ClassVar[str] = ""


class OpenAiKind(LlmProviderKind):
    name = "openai"
    label = "OpenAI"
    test_model = "openai/gpt-4o-mini"


class AnthropicKind(LlmProviderKind):
    name = "anthropic"
    label = "Anthropic"
    test_model = "anthropic/claude-haiku-4-5"


class GeminiKind(LlmProviderKind):
    name = "gemini"
    label = "Google Gemini"
    test_model = "gemini/gemini-2.5-flash"


class OllamaKind(LlmProviderKind):
    name = "ollama"
    label = "Ollama"
    test_model = "ollama/llama3.2"
    fields: ClassVar[tuple[Field, ...]] = (
        Field("base_url", required=True, description="e.g. http://ollama.internal:11434"),
        Field("allowed_models", "array", default=[]),
        Field("default", "boolean", default=False),
    )
