"""The direct route: LiteLLM's provider transformations sent on Falcon's own connections.

OpenAI, Anthropic and Ollama requests are shaped by LiteLLM's provider configuration and sent by the
gateway itself, in the calling thread (``llm_complete``, a tenant's base URL) or on the process's event
loop (``llm_start``). Both routes are checked against the loopback provider: what it received, what the
engine gets back, and how each failure is classified.
"""

from __future__ import annotations

from typing import Any

import pytest

from agents.engine.types import LlmError, LlmRequest, LlmResult
from agents.llm import gateway
from agents.llm.gateway import llm_complete, llm_result, llm_start
from tests.servers.llm import Reply

pytestmark = pytest.mark.django_db

DIRECT = [
    ("openai/gpt-4o-mini", "openai"),
    ("anthropic/claude-3-5-haiku-20241022", "anthropic"),
    ("ollama/llama3.2", "ollama"),
]
ROUTES = ("thread", "loop")
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Looks an order up",
        "parameters": {"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]},
    },
}


def _complete(request: LlmRequest, route: str) -> LlmResult:
    if route == "thread":
        return llm_complete(request)
    return llm_result(llm_start(request).result(timeout=30))


def _ask(model: str, **fields: Any) -> LlmRequest:
    return LlmRequest(model=model, messages=[{"role": "user", "content": "where is A-17?"}], **fields)


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("model", "provider"), DIRECT)
def test_each_provider_gets_its_own_request_shape_and_answers_text_tools_and_usage(
    llm, model, provider, route
):
    llm.enqueue(Reply(tool_calls=[("lookup", {"order": "A-17"})], prompt_tokens=7, completion_tokens=3))
    result = _complete(_ask(model, tools=[TOOL], temperature=0.2, max_tokens=64), route)

    assert [(c.name, c.arguments) for c in result.tool_calls] == [("lookup", {"order": "A-17"})]
    assert (result.prompt_tokens, result.completion_tokens, result.provider) == (7, 3, model.split("/")[0])
    [sent] = llm.requests_for(provider)
    body = sent.body
    assert body["model"] == model.split("/", 1)[1]
    if provider == "openai":
        assert sent.path == "/v1/chat/completions"
        assert sent.headers["authorization"] == "Bearer sk-test-openai-key-123456"
        assert (body["temperature"], body["max_tokens"]) == (0.2, 64)
        assert body["tools"][0]["function"]["name"] == "lookup"
    elif provider == "anthropic":
        assert sent.path == "/v1/messages"
        assert sent.headers["x-api-key"] == "sk-ant-test-key-123456"
        assert "anthropic-version" in sent.headers
        assert (body["temperature"], body["max_tokens"]) == (0.2, 64)
        assert body["tools"][0]["name"] == "lookup"
        assert "input_schema" in body["tools"][0]
    else:
        assert sent.path == "/api/chat"
        assert body["options"]["temperature"] == 0.2
        assert body["stream"] is False
        assert body["tools"][0]["function"]["name"] == "lookup"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(
    ("status", "code", "retryable"),
    [
        (400, "llm_request_rejected", False),
        (401, "llm_authentication_failed", False),
        (429, "llm_rate_limited", True),
        (503, "llm_server_error", True),
    ],
)
@pytest.mark.parametrize("model", [m for m, _ in DIRECT])
def test_a_refusal_is_classified_and_carries_the_providers_words_not_the_key(
    llm, model, status, code, retryable, route
):
    llm.enqueue(Reply(status=status, text="the provider says no to sk-test-openai-key-123456"))
    with pytest.raises(LlmError) as raised:
        _complete(_ask(model), route)
    error = raised.value
    assert (error.code, error.retryable, error.status_code) == (code, retryable, status)
    assert "the provider says no" in error.message
    assert f"HTTP {status}" in error.message
    assert "sk-test-openai-key-123456" not in error.message


def _platform_openai_at(settings: Any, base: str) -> None:
    providers = dict(settings.FALCON_LLM_PROVIDERS)
    providers["openai"] = {**providers["openai"], "api_base": base}
    settings.FALCON_LLM_PROVIDERS = providers


@pytest.mark.parametrize("route", ROUTES)
def test_a_provider_that_never_answers_is_a_retryable_timeout(llm, settings, route):
    """A listening socket nobody reads from: the connection opens, the answer never comes."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        _platform_openai_at(settings, f"http://127.0.0.1:{silent.getsockname()[1]}/v1")
        with pytest.raises(LlmError) as raised:
            _complete(_ask("openai/gpt-4o-mini", timeout_s=0.3), route)
    assert (raised.value.code, raised.value.retryable) == ("llm_timeout", True)


@pytest.mark.parametrize("route", ROUTES)
def test_an_unreachable_provider_is_a_retryable_connection_error(llm, settings, route):
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    _platform_openai_at(settings, f"http://127.0.0.1:{port}/v1")
    with pytest.raises(LlmError) as raised:
        _complete(_ask("openai/gpt-4o-mini"), route)
    assert (raised.value.code, raised.value.retryable) == ("llm_connection_error", True)


@pytest.mark.parametrize("route", ROUTES)
def test_an_oversized_answer_is_a_failure_read_only_up_to_the_bound(llm, monkeypatch, route):
    monkeypatch.setattr(gateway, "MAX_ANSWER_BYTES", 2000)
    llm.enqueue(Reply(text="x" * 5000))
    with pytest.raises(LlmError, match="too large"):
        _complete(_ask("openai/gpt-4o-mini"), route)
    llm.enqueue(Reply(text="x" * 500))
    assert _complete(_ask("openai/gpt-4o-mini"), route).text == "x" * 500


def test_a_keyed_provider_without_a_key_sends_nothing(llm, settings):
    """No key configured: refused before any request (no other credential is sent in its place)."""
    providers = dict(settings.FALCON_LLM_PROVIDERS)
    providers["anthropic"] = {**providers["anthropic"], "api_key": ""}
    settings.FALCON_LLM_PROVIDERS = providers
    with pytest.raises(LlmError) as raised:
        llm_complete(_ask("anthropic/claude-3-5-haiku-20241022"))
    assert raised.value.code == "llm_authentication_failed"
    assert llm.received == []
