"""LLM provider credentials for the engine's llm and agent steps: OpenAI, Anthropic, Gemini, Ollama."""

from __future__ import annotations

from typing import Any, ClassVar

from connectors.kinds.base import Field, Kind, Resolved


class _Provider(Kind):
    step_types = ("llm", "agent")
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
        }

    @classmethod
    def test(cls, connector: Resolved) -> dict[str, Any]:
        from agents.engine.types import LlmRequest
        from agents.llm import llm_complete

        models = connector.config.get("allowed_models") or [cls.test_model]
        result = llm_complete(
            LlmRequest(
                model=models[0], messages=[{"role": "user", "content": "ping"}], max_tokens=1, timeout_s=20
            ),
            credentials=cls.credentials(connector),
        )
        return {"ok": True, "detail": f"{result.model} answered in {result.latency_ms} ms"}

    test_model: ClassVar[str] = ""


class OpenAiKind(_Provider):
    name = "openai"
    label = "OpenAI"
    test_model = "openai/gpt-4o-mini"


class AnthropicKind(_Provider):
    name = "anthropic"
    label = "Anthropic"
    test_model = "anthropic/claude-haiku-4-5"


class GeminiKind(_Provider):
    name = "gemini"
    label = "Google Gemini"
    test_model = "gemini/gemini-2.5-flash"


class OllamaKind(_Provider):
    name = "ollama"
    label = "Ollama"
    test_model = "ollama/llama3.2"
    fields: ClassVar[tuple[Field, ...]] = (
        Field("base_url", required=True, description="e.g. http://ollama.internal:11434"),
        Field("allowed_models", "array", default=[]),
        Field("default", "boolean", default=False),
    )
