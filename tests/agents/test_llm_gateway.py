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
