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


class _Proxy:
    """A forward proxy on loopback that records the absolute URL of each request and answers it as
    an OpenAI-compatible provider would."""

    def __init__(self) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        seen: list[str] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                seen.append(self.path)
                body = json.dumps(
                    {
                        "id": "chatcmpl-proxy",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "gpt-4o-mini",
                        "choices": [
                            {"index": 0, "message": {"role": "assistant", "content": "via the proxy"}}
                        ],
                        "usage": {"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5},
                    }
                ).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def environment_proxy(monkeypatch: pytest.MonkeyPatch) -> Any:
    """A proxy named by the environment (read once per provider URL: the cache is emptied around)."""
    proxy = _Proxy()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    gateway._env_proxy.cache_clear()
    yield proxy
    gateway._env_proxy.cache_clear()
    proxy.stop()


def test_the_platform_provider_is_reached_through_the_environments_proxy(llm, settings, environment_proxy):
    """As LiteLLM's client did: HTTP_PROXY carries the platform's provider calls (the provider's
    host is the proxy's to resolve: here a name that resolves nowhere)."""
    _platform_at(settings, "openai", "http://llm.provider.invalid/v1")
    result = llm_result(llm_start(_ask("openai/gpt-4o-mini")).result(timeout=30))
    assert result.text == "via the proxy"
    assert environment_proxy.seen == ["http://llm.provider.invalid/v1/chat/completions"]
    assert llm.received == []


def test_no_proxy_sends_the_platform_provider_directly(llm, monkeypatch, environment_proxy):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    llm.enqueue(Reply(text="directly"))
    result = llm_result(llm_start(_ask("openai/gpt-4o-mini")).result(timeout=30))
    assert result.text == "directly"
    assert environment_proxy.seen == []
    assert len(llm.requests_for("openai")) == 1
