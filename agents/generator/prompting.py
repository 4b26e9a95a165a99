"""What the generator tells the model: its own system prompt (a governed prompt of the platform
tenant, so it improves without a deploy and every generation records the version it used), and the
tenant's context: the workflow schema, the step catalogue, connectors (names, kinds, operations;
never secrets), the models it may use, the prompt library's names and the plan's limits."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.db import transaction

from agents.engine.spec import workflow_json_schema
from agents.prompts import services as prompt_services
from agents.prompts.models import Prompt, PromptVersion
from billing.quotas import usage_summary
from connectors.kinds import KINDS
from connectors.models import Connector
from tenants.audit import Actor
from tenants.models import Tenant

PLATFORM_SLUG = "falcon-platform"
PROMPT_NAME = "agent-generator"
SYSTEM_PROMPT = """You are Falcon's Agent Generator. From a description of what an agent should do, you
design a Falcon workflow: a JSON object with "inputs" (a JSON Schema of the run input), "steps" and
"output". Answer with ONE JSON object and nothing else:
{"name": "<short name>", "description": "<one sentence>", "plan": ["<step in words>", ...],
 "definition": {<the workflow>}}

Rules:
- Use only the step types of the catalogue, the models listed as allowed, and the connectors listed
  (by name). Never write an API key, token or password into the workflow: connectors hold secrets.
- Outbound HTTP only through an "http" step naming a connector, with a path relative to its base URL.
- A step that changes something outside the run (a "send", an HTTP method other than GET, a database
  write) comes after an approval step: {"id": "approve", "type": "wait", "approval": true}.
- Step ids are unique identifiers; templates are Jinja2 over input.<field>, steps.<id>.output and env;
  a step may only read steps that run before it (the previous step, or those in its "needs").
- Declare every input field the templates read in "inputs". Keep workflows short and useful.
{{ feedback }}"""


@dataclass(frozen=True)
class GeneratorPrompt:
    system: str
    version: int


def platform_tenant() -> Tenant:
    tenant, _ = Tenant.objects.get_or_create(slug=PLATFORM_SLUG, defaults={"name": "Falcon platform"})
    return tenant


@transaction.atomic
def generator_prompt() -> GeneratorPrompt:
    """The production version of the platform's generator prompt (created, approved and labelled from
    the built-in text the first time; operators publish new versions with `manage.py generator_prompt`)."""
    tenant = platform_tenant()
    actor = Actor.system("agent-generator")
    prompt = Prompt.objects.filter(tenant=tenant, name=PROMPT_NAME).first()
    if prompt is None:
        prompt = prompt_services.prompt_create(
            tenant=tenant, name=PROMPT_NAME, description="The Agent Generator's system prompt.", actor=actor,
            created_by=None,
        )  # fmt: skip
    try:
        version = prompt_services.prompt_resolve(
            tenant_id=tenant.pk, name=PROMPT_NAME, label=None, version=None
        )
    except Exception:
        version = publish_generator_prompt(SYSTEM_PROMPT, note="built-in text", actor=actor)
    return GeneratorPrompt(version.template, version.number)


@transaction.atomic
def publish_generator_prompt(text: str, *, note: str, actor: Actor) -> PromptVersion:
    """A new version of the generator prompt, approved and moved to ``production``."""
    tenant = platform_tenant()
    prompt = Prompt.objects.get(tenant=tenant, name=PROMPT_NAME)
    version = prompt_services.prompt_version_create(
        prompt=prompt, template=text, input_variables=[], commit_message=note, actor=actor, author=None
    )
    prompt_services.prompt_version_submit(version=version, actor=actor)
    version = prompt_services.prompt_version_review(
        version=version, approve=True, comment=note, actor=actor, reviewer=None
    )
    prompt_services.prompt_label_move(prompt=prompt, label="production", version=version, actor=actor)
    return version


CATALOGUE = {
    "llm": {
        "id": "summarize",
        "type": "llm",
        "model": "<allowed model>",
        "prompt": "Summarize: {{ input.text }}",
    },
    "agent": {"id": "research", "type": "agent", "model": "<allowed model>", "prompt": "…", "tools": []},
    "http": {
        "id": "lookup",
        "type": "http",
        "connector": "<http connector>",
        "method": "GET",
        "path": "/items",
    },
    "db_query": {
        "id": "rows",
        "type": "db_query",
        "connector": "<db connector>",
        "sql": "SELECT … WHERE id = %s",
        "params": ["{{ input.id }}"],
    },
    "send": {"id": "notify", "type": "send", "connector": "<slack or smtp connector>", "text": "…"},
    "transform": {"id": "shape", "type": "transform", "value": {"answer": "{{ steps.summarize.output }}"}},
    "branch": {
        "id": "route",
        "type": "branch",
        "cases": [{"when": "input.urgent", "steps": ["escalate"]}],
        "default": ["queue"],
    },
    "map": {
        "id": "each",
        "type": "map",
        "items": "input.items",
        "steps": [{"id": "one", "type": "transform", "value": "{{ item }}"}],
    },
    "wait": {"id": "approve", "type": "wait", "approval": True, "prompt": "Send it?"},
}


def tenant_brief(tenant: Tenant, models: list[str]) -> dict[str, Any]:
    """The tenant's context for the model (no secret: connector names, kinds and what they serve)."""
    connectors = [
        {"name": name, "kind": kind, "serves": list(KINDS[kind].step_types) if kind in KINDS else []}
        for name, kind in Connector.objects.filter(tenant=tenant).order_by("name").values_list("name", "kind")
    ]
    prompts = list(Prompt.objects.filter(tenant=tenant).order_by("name").values_list("name", flat=True)[:50])
    metrics = usage_summary(tenant)["metrics"]
    limits = {
        name: values.get("limit") for name, values in metrics.items() if values.get("limit") is not None
    }
    return {"models": models, "connectors": connectors, "prompt_library": prompts, "plan_limits": limits}


def messages_for(
    *,
    system: str,
    description: str,
    examples: list[Any],
    trigger: str,
    brief: dict[str, Any],
    base: dict[str, Any] | None,
    instruction: str,
    feedback: list[dict[str, str]] | None,
) -> list[dict[str, str]]:
    note = ""
    if feedback:
        note = "Your previous answer had these problems; answer again with all of them fixed:\n" + "\n".join(
            f"- {p['path']}: {p['message']} ({p['code']})" for p in feedback
        )
    schema = json.dumps(workflow_json_schema(), separators=(",", ":"))
    context = {
        "step_catalogue": CATALOGUE,
        "tenant": brief,
        "trigger": trigger or "api",
        "examples": examples,
    }
    user = [f"Workflow JSON Schema: {schema}", f"Context: {json.dumps(context, default=str)}"]
    if base is not None:
        user.append(f"The current workflow: {json.dumps(base)}\nChange it as follows: {instruction}")
    user.append(f"The agent: {description}")
    return [
        {"role": "system", "content": system.replace("{{ feedback }}", note)},
        {"role": "user", "content": "\n\n".join(user)},
    ]


ANSWER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "description": {"type": "string"},
        "plan": {"type": "array", "items": {"type": "string"}},
        "definition": {"type": "object"},
    },
    "required": ["name", "description", "plan", "definition"],
}
