"""The direct route: LiteLLM's provider transformations sent on Falcon's own connections.

OpenAI, Anthropic and Ollama requests are shaped by LiteLLM's provider configuration and sent by the
gateway itself: the platform's providers on the process's event loop, a tenant's base URL (its own
provider connector) in a thread through the tenant's network policy (``guarded_request``). Both routes
are checked against the loopback provider: what it received, what the engine gets back, and how each
failure is classified.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

import pytest

from agents.engine.types import LlmError, LlmRequest, LlmResult
from agents.llm import gateway
from agents.llm.gateway import llm_complete, llm_result, llm_start
from connectors.netguard import PUBLIC_ONLY, NetPolicy
from tests.servers.llm import Reply

pytestmark = pytest.mark.django_db

DIRECT = [
    ("openai/gpt-4o-mini", "openai"),
    ("anthropic/claude-3-5-haiku-20241022", "anthropic"),
    ("ollama/llama3.2", "ollama"),
]
ROUTES = ("tenant", "platform")
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Looks an order up",
        "parameters": {"type": "object", "properties": {"order": {"type": "string"}}, "required": ["order"]},
    },
}


LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


@pytest.fixture(params=ROUTES)
def send(request: Any, llm: Any, settings: Any) -> Callable[..., LlmResult]:
    """One completion on the route under test, at the loopback provider or at ``base``.

    platform: the platform's configured provider, on the event loop (``llm_start``);
    tenant: a tenant connector's base URL and key, in a thread (``llm_complete``), under a policy
    that allows the loopback network (as an operator's ``FALCON_ALLOWED_PRIVATE_NETWORKS`` would).
    """
    settings.FALCON_ALLOWED_PRIVATE_NETWORKS = [str(LOOPBACK)]

    def complete(ask: LlmRequest, base: str | None = None) -> LlmResult:
        provider = ask.model.split("/", 1)[0]
        if request.param == "platform":
            if base:
                _platform_at(settings, provider, base)
            return llm_result(llm_start(ask).result(timeout=30))
        credentials = {**llm.provider_settings()[provider], "policy": NetPolicy(allowed=(LOOPBACK,))}
        if base:
            credentials["api_base"] = base
        return llm_complete(ask, credentials)

    return complete


def _platform_at(settings: Any, provider: str, base: str) -> None:
    providers = dict(settings.FALCON_LLM_PROVIDERS)
    providers[provider] = {**providers[provider], "api_base": base}
    settings.FALCON_LLM_PROVIDERS = providers


def _ask(model: str, **fields: Any) -> LlmRequest:
    return LlmRequest(model=model, messages=[{"role": "user", "content": "where is A-17?"}], **fields)


@pytest.mark.parametrize(("model", "provider"), DIRECT)
def test_each_provider_gets_its_own_request_shape_and_answers_text_tools_and_usage(
    llm, send, model, provider
):
    llm.enqueue(Reply(tool_calls=[("lookup", {"order": "A-17"})], prompt_tokens=7, completion_tokens=3))
    result = send(_ask(model, tools=[TOOL], temperature=0.2, max_tokens=64))

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
    llm, send, model, status, code, retryable
):
    llm.enqueue(Reply(status=status, text="the provider says no to sk-test-openai-key-123456"))
    with pytest.raises(LlmError) as raised:
        send(_ask(model))
    error = raised.value
    assert (error.code, error.retryable, error.status_code) == (code, retryable, status)
    assert "the provider says no" in error.message
    assert f"HTTP {status}" in error.message
    assert "sk-test-openai-key-123456" not in error.message


def test_a_provider_that_never_answers_is_a_retryable_timeout(send):
    """A listening socket nobody reads from: the connection opens, the answer never comes."""
    import socket

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        with pytest.raises(LlmError) as raised:
            send(_ask("openai/gpt-4o-mini", timeout_s=0.3), f"http://127.0.0.1:{silent.getsockname()[1]}/v1")
    assert (raised.value.code, raised.value.retryable) == ("llm_timeout", True)


def test_an_unreachable_provider_is_a_retryable_connection_error(send):
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    with pytest.raises(LlmError) as raised:
        send(_ask("openai/gpt-4o-mini"), f"http://127.0.0.1:{port}/v1")
    assert (raised.value.code, raised.value.retryable) == ("llm_connection_error", True)


def test_an_oversized_answer_is_a_failure_read_only_up_to_the_bound(llm, send, monkeypatch):
    monkeypatch.setattr(gateway, "MAX_ANSWER_BYTES", 2000)
    llm.enqueue(Reply(text="x" * 5000))
    with pytest.raises(LlmError, match="too large"):
        send(_ask("openai/gpt-4o-mini"))
    llm.enqueue(Reply(text="x" * 500))
    assert send(_ask("openai/gpt-4o-mini")).text == "x" * 500


def test_a_keyed_provider_without_a_key_sends_nothing(llm, settings):
    """No key configured: refused before any request (no other credential is sent in its place)."""
    providers = dict(settings.FALCON_LLM_PROVIDERS)
    providers["anthropic"] = {**providers["anthropic"], "api_key": ""}
    settings.FALCON_LLM_PROVIDERS = providers
    with pytest.raises(LlmError) as raised:
        llm_complete(_ask("anthropic/claude-3-5-haiku-20241022"))
    assert raised.value.code == "llm_authentication_failed"
    assert llm.received == []


def test_a_tenant_base_url_outside_its_policy_is_never_contacted(llm):
    """The tenant's policy allows no private network: its loopback base URL is refused, unsent."""
    credentials = {**llm.provider_settings()["openai"], "policy": PUBLIC_ONLY}
    with pytest.raises(LlmError) as raised:
        llm_complete(_ask("openai/gpt-4o-mini"), credentials)
    assert raised.value.code == "destination_blocked"
    assert llm.received == []


def test_a_tenant_base_url_redirecting_elsewhere_is_checked_again(llm, settings):
    """Allowed 127.0.0.2 only: the provider there redirecting to 127.0.0.1 is refused at that hop."""
    from tests.servers.http_api import HttpApiServer

    settings.FALCON_ALLOWED_PRIVATE_NETWORKS = [str(LOOPBACK)]
    redirector = HttpApiServer(host="127.0.0.2")
    try:
        credentials = {
            "api_key": "sk-tenant-own-key",
            "api_base": f"{redirector.base}/redirect?to={llm.base}/v1",
            "policy": NetPolicy(allowed=(ipaddress.ip_network("127.0.0.2/32"),)),
        }
        with pytest.raises(LlmError) as raised:
            llm_complete(_ask("openai/gpt-4o-mini"), credentials)
    finally:
        redirector.stop()
    assert raised.value.code == "destination_blocked"
    assert llm.received == []
