"""Templates cannot stall a shared process: work is bounded and a limit answers ``template_limit``.

Regression: ``"x" * 300000000`` built 300 MB in a web process (a prompt's render preview) and
``2 ** 4000000`` held the interpreter for over a second.
"""

from __future__ import annotations

import gc
import time

import pytest

from agents.engine import templates
from agents.runs.execution import run_execute
from tests.agents.helpers import create_agent

pytestmark = pytest.mark.django_db

ATTACKS = [
    '{{ "x" * 300000000 }}',
    "{{ 2 ** 4000000 }}",
    '{{ "x".center(1000000000) }}',
    '{{ "x"|center(1000000000) }}',
    '{{ "{:>999999999}".format(1) }}',
    '{{ "%999999999s" % 1 }}',
    "{{ lipsum(100000) }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    '{% set ns = namespace(s="x" * 1000) %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}',
    '{{ (["x" * 1000000] * 1000000)|join }}',
    '{{ ("x" * 1000000)|replace("x", "y" * 1000000) }}',
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{{ range(100000)|join(',') * 100 }}",
]


@pytest.mark.parametrize("template", ATTACKS)
def test_each_attack_stops_early_with_a_named_limit(template):
    # The CPU measured is the render's own: late in a full test session the process holds hundreds
    # of MB, and a deep render's garbage collections would walk all of it (0.85 s seen; 7 ms alone).
    gc.collect()
    gc.freeze()
    try:
        started = time.thread_time()
        with pytest.raises(templates.TemplateLimit) as raised:
            templates.render(template, {})
        spent = time.thread_time() - started
    finally:
        gc.unfreeze()
    assert raised.value.code == "template_limit"
    assert "template_limit:" in str(raised.value)
    assert spent < 0.5, template


def test_ordinary_templates_still_work():
    context = {"input": {"things": list(range(1000)), "name": "Ada"}}
    assert templates.render("{{ input.things|length }}", context) == 1000
    assert templates.render("Hi {{ input.name }}!", context) == "Hi Ada!"
    assert templates.render("{{ 2 ** 64 }}", context) == 2**64
    assert templates.render('{{ "%05.1f"|format(3.14159) }}', context) == "003.1"
    assert len(templates.render('{{ "x" * 1000000 }}', context)) == 1_000_000


def test_a_prompt_preview_over_a_limit_is_a_400_not_a_stalled_worker(world, alice_client):
    created = alice_client.post(
        "/api/v1/prompts/",
        {"name": "big", "version": {"template": '{{ "x" * 300000000 }}', "commit_message": "x"}},
        format="json",
    )
    assert created.status_code == 201, created.json()
    started = time.monotonic()
    response = alice_client.post(
        f"/api/v1/prompts/{created.json()['id']}/versions/1/render", {"variables": {}}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "template_limit"
    assert time.monotonic() - started < 1


def test_a_step_over_a_limit_fails_the_run_with_template_limit(world, alice_client):
    agent_id = create_agent(
        alice_client, {"steps": [{"id": "boom", "type": "transform", "value": "{{ 2 ** 4000000 }}"}]}
    )
    run = alice_client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {}}, format="json").json()
    assert run_execute(run["id"]) == "failed"
    detail = alice_client.get(f"/api/v1/runs/{run['id']}").json()
    assert detail["error"]["code"] == "template_limit"
    assert detail["error"]["step"] == "boom"
