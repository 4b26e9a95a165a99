"""The OpenAI-compatible endpoint, driven by the official `openai` SDK against a live server and a real
worker: models list, a completion, a streamed completion, errors in OpenAI's shape, tenant walls."""

from __future__ import annotations

import openai
import pytest

from agents.models import Run
from tests.agents.helpers import create_agent

pytestmark = pytest.mark.django_db(transaction=True)

CHAT = {
    "inputs": {"type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]},
    "steps": [
        {"id": "tidy", "type": "transform", "value": "{{ input.message | upper }}"},
        {"id": "say", "type": "llm", "model": "sandbox/echo", "prompt": "{{ steps.tidy.output }}"},
    ],
    "output": "{{ steps.say.output }}",
}
TRANSCRIPT = {
    "inputs": {"type": "object", "properties": {"messages": {"type": "array"}}, "required": ["messages"]},
    "steps": [{"id": "count", "type": "transform", "value": "{{ input.messages | length }} messages"}],
    "output": "{{ steps.count.output }}",
}


@pytest.fixture
def sdk(world, live_server, make_key):
    _, token = make_key(world.tenant_a, ["run", "read"])
    base = f"{live_server.url}/api/openai/v1"
    return openai.OpenAI(base_url=base, api_key=token, max_retries=0, timeout=60)


def test_models_lists_the_agents_the_key_may_run(world, alice_client, charlie_client, sdk):
    create_agent(alice_client, CHAT, name="helper")
    create_agent(alice_client, CHAT, name="draft", publish=False)
    create_agent(charlie_client, CHAT, name="outsider")
    assert [m.id for m in sdk.models.list()] == ["agent:helper"]


def test_a_completion_runs_the_agent(world, alice_client, celery_worker, sdk):
    create_agent(alice_client, CHAT, name="helper")
    completion = sdk.chat.completions.create(
        model="agent:helper",
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there"},
        ],
    )
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "agent:helper"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "[sandbox] HELLO THERE"
    assert completion.choices[0].finish_reason == "stop"
    run = Run.objects.get(pk=completion.model_extra["falcon_run_id"])
    assert run.input == {"message": "hello there"}  # only what the agent's schema declares
    assert run.trigger == "api"
    assert completion.usage.total_tokens == run.prompt_tokens + run.completion_tokens > 0


def test_all_messages_reach_an_agent_that_takes_them(world, alice_client, celery_worker, sdk):
    agent_id = create_agent(alice_client, TRANSCRIPT, name="transcript")
    completion = sdk.chat.completions.create(
        model=f"agent:{agent_id}",  # by id too
        messages=[
            {"role": "user", "content": "one"},
            {"role": "assistant", "content": "two"},
            {"role": "user", "content": [{"type": "text", "text": "three"}]},
        ],
    )
    assert completion.choices[0].message.content == "3 messages"
    run = Run.objects.get(pk=completion.model_extra["falcon_run_id"])
    assert run.input["messages"][2] == {"role": "user", "content": "three"}


def test_a_streamed_completion_sends_steps_then_the_answer(world, alice_client, celery_worker, sdk):
    create_agent(alice_client, CHAT, name="helper")
    stream = sdk.chat.completions.create(
        model="agent:helper",
        messages=[{"role": "user", "content": "stream it"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)  # the SDK stops at [DONE]
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert content == "[sandbox] STREAM IT"
    steps = [c.model_extra["falcon_step"]["key"] for c in chunks if (c.model_extra or {}).get("falcon_step")]
    assert steps == ["tidy", "say"]
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens > 0


def test_errors_come_in_openais_shape(world, alice_client, charlie_client, live_server, sdk):
    outsider = create_agent(charlie_client, CHAT, name="outsider")
    with pytest.raises(openai.NotFoundError) as missing:
        sdk.chat.completions.create(model="agent:nobody", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.NotFoundError):  # another tenant's agent, by id: the same answer
        sdk.chat.completions.create(model=f"agent:{outsider}", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as bad:
        sdk.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert bad.value.code == "model_not_found"
    assert bad.value.body["param"] == "model"
    stranger = openai.OpenAI(base_url=sdk.base_url, api_key="flk_live_not_a_key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        stranger.models.list()


def test_a_read_only_key_may_not_run_agents(world, alice_client, live_server, make_key):
    create_agent(alice_client, CHAT, name="helper")
    _, token = make_key(world.tenant_a, ["read"])
    reader = openai.OpenAI(base_url=f"{live_server.url}/api/openai/v1", api_key=token, max_retries=0)
    with pytest.raises(openai.PermissionDeniedError):
        reader.chat.completions.create(model="agent:helper", messages=[{"role": "user", "content": "hi"}])
