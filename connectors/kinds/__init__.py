"""The registry of connector kinds."""

from __future__ import annotations

from connectors.kinds.base import Field, Kind, Resolved
from connectors.kinds.http import HttpKind
from connectors.kinds.llm_providers import AnthropicKind, GeminiKind, LlmProviderKind, OllamaKind, OpenAiKind
from connectors.kinds.mcp import McpKind
from connectors.kinds.messaging import SlackWebhookKind, SmtpKind
from connectors.kinds.mysql import MySqlKind
from connectors.kinds.postgres import PostgresKind

KINDS: dict[str, type[Kind]] = {
    kind.name: kind
    for kind in (
        HttpKind,
        PostgresKind,
        MySqlKind,
        SmtpKind,
        SlackWebhookKind,
        OpenAiKind,
        AnthropicKind,
        GeminiKind,
        OllamaKind,
        McpKind,
    )
}
LLM_PROVIDERS: dict[str, type[LlmProviderKind]] = {
    kind.name: kind for kind in (OpenAiKind, AnthropicKind, GeminiKind, OllamaKind)
}
LLM_PROVIDER_KINDS = tuple(LLM_PROVIDERS)

__all__ = ["KINDS", "LLM_PROVIDERS", "LLM_PROVIDER_KINDS", "Field", "Kind", "LlmProviderKind", "Resolved"]
