"""The LLM gateway's pricing and model checks (the admin-edited price table, the sandbox)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from agents.engine.types import LlmError, LlmRequest
from agents.llm.gateway import llm_complete, model_check
from agents.models import ModelPrice
from tests.servers.llm import Reply

pytestmark = pytest.mark.django_db


def test_price_table_covers_models_the_map_lacks(llm):
    assert model_check("openai/my-finetune-1") is not None
    ModelPrice.objects.create(
        model="openai/my-finetune-1", input_usd_per_mtok=Decimal("2"), output_usd_per_mtok=Decimal("8")
    )
    assert model_check("openai/my-finetune-1") is None
    llm.enqueue(Reply(text="hi", prompt_tokens=500_000, completion_tokens=250_000))
    result = llm_complete(
        LlmRequest(model="openai/my-finetune-1", messages=[{"role": "user", "content": "x"}])
    )
    assert result.cost_usd == pytest.approx(1.0 + 2.0)


def test_ollama_is_free_unless_priced(llm):
    result = llm_complete(LlmRequest(model="ollama/llama3.2", messages=[{"role": "user", "content": "x"}]))
    assert result.cost_usd == 0
    assert result.provider == "ollama"
    ModelPrice.objects.create(
        model="ollama/llama3.2", input_usd_per_mtok=Decimal("1"), output_usd_per_mtok=Decimal("1")
    )
    result = llm_complete(LlmRequest(model="ollama/llama3.2", messages=[{"role": "user", "content": "x"}]))
    assert result.cost_usd == pytest.approx(15 / 1_000_000)


def test_sandbox_is_offline_deterministic_and_labelled(llm):
    request = LlmRequest(model="sandbox/echo", messages=[{"role": "user", "content": "ping"}])
    assert llm_complete(request).text == llm_complete(request).text == "[sandbox] ping"
    structured = llm_complete(
        LlmRequest(
            model="sandbox/json",
            messages=[{"role": "user", "content": "x"}],
            json_schema={
                "type": "object",
                "properties": {
                    "n": {"type": "integer", "minimum": 3},
                    "tags": {"type": "array", "items": {"enum": ["a"]}},
                },
            },
        )
    )
    assert structured.text == '{"n": 3, "tags": ["a"]}'
    assert llm.received == []


def test_provider_errors_never_carry_the_key(llm):
    llm.enqueue(Reply(status=401))
    with pytest.raises(LlmError) as raised:
        llm_complete(LlmRequest(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}]))
    assert raised.value.retryable is False
    assert "sk-test-openai-key-123456" not in raised.value.message


def test_many_calls_in_flight_without_a_thread_each(llm):
    """llm_start returns at once; 60 calls wait for the provider together on the process's one event
    loop thread, not on 60 threads (the worker's I/O concurrency does not cost a thread per call)."""
    import os
    import threading

    from agents.llm.gateway import llm_result, llm_start

    llm.default_delay_s = 0.5
    before = set(threading.enumerate())
    futures = [
        llm_start(LlmRequest(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": f"n{i}"}]))
        for i in range(60)
    ]
    results = [llm_result(f.result(timeout=30)) for f in futures]
    assert llm.peak_in_flight == 60
    # The loop thread (started once per process) and its bounded default executor (name lookups), not
    # a thread per call (the loopback provider's own threads, one per connection, are the server side).
    ours = {t.name for t in set(threading.enumerate()) - before if "process_request" not in t.name}
    assert all(name == "falcon-llm-loop" or name.startswith("asyncio_") for name in ours)
    assert len(ours) <= 1 + min(32, (os.cpu_count() or 1) + 4) < 60
    assert sorted(r.text for r in results) == sorted(f"echo: n{i}" for i in range(60))
    assert all(r.prompt_tokens > 0 and r.cost_usd > 0 for r in results)


def test_a_tenant_base_url_is_never_called_on_the_event_loop():
    """Calls to a tenant's base URL run in a thread under pinned resolution; the loop refuses them."""
    import asyncio

    from agents.llm import gateway
    from connectors.netguard import PUBLIC_ONLY

    call = gateway._prepare(
        LlmRequest(model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "x"}]),
        {"api_key": "k", "api_base": "https://93.184.216.34/v1", "policy": PUBLIC_ONLY},
    )
    assert call.policy is PUBLIC_ONLY
    with pytest.raises(ValueError, match="network policy"):
        asyncio.run(gateway._call_async(call))
