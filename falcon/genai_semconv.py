"""OpenTelemetry's GenAI semantic conventions, as Falcon writes them: every name in one place.

The conventions are still in development (attributes were renamed as recently as 2025: ``gen_ai.system``
became ``gen_ai.provider.name``); when they move again, this module is the one to change.
"""

from __future__ import annotations

OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
TOOL_NAME = "gen_ai.tool.name"
TOOL_CALL_ID = "gen_ai.tool.call.id"
ERROR_TYPE = "error.type"

OPERATION_CHAT = "chat"
OPERATION_EXECUTE_TOOL = "execute_tool"
OPERATION_INVOKE_AGENT = "invoke_agent"

# Falcon's provider names (``provider/model``) to the conventions' well-known values.
PROVIDERS = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gemini": "gcp.gemini",
    "ollama": "ollama",
    "ollama_chat": "ollama",
    "sandbox": "falcon.sandbox",
}


def provider_name(provider: str) -> str:
    return PROVIDERS.get(provider, provider)


def chat_span_name(model: str) -> str:
    """``{operation} {model}``, as the conventions name a chat call's span."""
    return f"{OPERATION_CHAT} {model}"
