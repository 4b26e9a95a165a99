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


def test_litellm_prices_are_read_once_per_model_and_match_litellm_per_call(monkeypatch):
    """Per-model rates from LiteLLM's map (asked once) price every call as LiteLLM itself would; models
    whose price depends on the call's size are still priced by LiteLLM on each call."""
    import random

    import litellm

    from agents.llm.gateway import _litellm_price, price_of

    models = [
        name
        for name, info in litellm.model_cost.items()
        if info.get("litellm_provider") in {"openai", "anthropic", "gemini"} and info.get("mode") == "chat"
    ]
    assert len(models) > 50
    rng = random.Random(15)
    linear = tiered = 0
    for name in models:
        model = name if "/" in name else f"{litellm.model_cost[name]['litellm_provider']}/{name}"
        price = price_of(model)
        if price.unpriced is not None:
            continue
        linear += price.tiered is None
        tiered += price.tiered is not None
        for prompt, completion in [(rng.randint(0, 300_000), rng.randint(0, 20_000)) for _ in range(3)]:
            expected = sum(
                litellm.cost_per_token(model=model, prompt_tokens=prompt, completion_tokens=completion)
            )
            assert price.cost(prompt, completion) == pytest.approx(expected, rel=1e-9, abs=1e-12), model
    assert linear > 50
    assert tiered > 0

    def asked(**_):
        raise AssertionError("LiteLLM's cost map was read for a model whose rates are known")

    monkeypatch.setattr(litellm, "cost_per_token", asked)
    assert price_of("openai/gpt-4o-mini").cost(1_000_000, 0) == pytest.approx(
        float(_litellm_price("openai/gpt-4o-mini").input_usd_per_mtok)
    )


def test_one_price_read_prices_the_reservation_and_the_answer(llm, django_assert_num_queries):
    from agents.llm.gateway import llm_estimate, price_of

    ModelPrice.objects.create(model="openai/priced-once", input_usd_per_mtok=3, output_usd_per_mtok=9)
    with django_assert_num_queries(1):
        price = price_of("openai/priced-once")
    with django_assert_num_queries(0):
        tokens, cost = llm_estimate(
            LlmRequest(
                model="openai/priced-once", messages=[{"role": "user", "content": "x"}], max_tokens=1000
            ),
            price,
        )
    assert cost == Decimal(str((3 * (tokens - 1000) + 9 * 1000) / 1_000_000))
