"""The template gallery: useful agents that run on the offline ``sandbox/`` models out of the box.

A template names the connectors it wants (``slack``, ``mail``, ``reports_db``, ``crm``). When the tenant
has a connector of that name and a fitting kind, the step uses it; when not, the step becomes a
*preview* (a ``transform`` showing what it would have sent or fetched), so the agent still runs end to
end and the builder says which connector to add. The Agent Generator picks from the same gallery.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from connectors.models import Connector

SANDBOX_MODEL = "sandbox/assistant"


@dataclass(frozen=True)
class Needed:
    """A connector a template's step uses: its name in the definition and the kinds that fit."""

    name: str
    kinds: tuple[str, ...]
    label: str


@dataclass(frozen=True)
class Template:
    slug: str
    name: str
    summary: str
    trigger: str  # how it is meant to start: api | webhook | schedule | email
    definition: dict[str, Any]
    needs: tuple[Needed, ...] = ()
    previews: dict[str, Any] = field(default_factory=dict)  # step id -> what its preview step outputs
    sample_input: dict[str, Any] = field(default_factory=dict)
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class Instance:
    """A template made concrete for one tenant."""

    template: Template
    definition: dict[str, Any]
    previewed: tuple[Needed, ...]  # connectors the tenant lacks: their steps are previews


TEMPLATES: tuple[Template, ...] = (
    Template(
        slug="support-triage",
        name="Support ticket triage",
        summary="Classifies a ticket (category, priority, summary) and routes urgent ones to a person.",
        trigger="webhook",
        keywords=("support", "ticket", "triage", "classify", "helpdesk", "priority", "customer"),
        sample_input={
            "subject": "Cannot log in",
            "body": "Since this morning I get an error.",
            "customer": "ACME",
        },
        definition={
            "inputs": {
                "type": "object",
                "properties": {
                    "subject": {"type": "string", "description": "The ticket's subject"},
                    "body": {"type": "string", "description": "What the customer wrote"},
                    "customer": {"type": "string"},
                },
                "required": ["subject", "body"],
            },
            "steps": [
                {
                    "id": "classify",
                    "type": "llm",
                    "model": SANDBOX_MODEL,
                    "system": (
                        "You triage support tickets. "
                        "Answer with the category, priority and a one-line summary."
                    ),
                    "prompt": (
                        "Subject: {{ input.subject }}\n"
                        "Customer: {{ input.customer | default('unknown') }}\n\n{{ input.body }}"
                    ),
                    "json_schema": {
                        "type": "object",
                        "properties": {
                            "category": {"type": "string", "enum": ["bug", "billing", "question", "feature"]},
                            "priority": {"type": "string", "enum": ["normal", "urgent"]},
                            "summary": {"type": "string"},
                        },
                        "required": ["category", "priority", "summary"],
                    },
                },
                {
                    "id": "route",
                    "type": "branch",
                    "cases": [{"when": "steps.classify.output.priority == 'urgent'", "steps": ["escalate"]}],
                    "default": ["queue"],
                },
                {
                    "id": "escalate",
                    "type": "transform",
                    "value": {"queue": "on-call", "summary": "{{ steps.classify.output.summary }}"},
                },
                {
                    "id": "queue",
                    "type": "transform",
                    "needs": ["route"],
                    "value": {"queue": "{{ steps.classify.output.category }}"},
                },
            ],
            "output": {
                "category": "{{ steps.classify.output.category }}",
                "priority": "{{ steps.classify.output.priority }}",
                "summary": "{{ steps.classify.output.summary }}",
            },
        },
    ),
    Template(
        slug="webhook-to-slack",
        name="Webhook → LLM → Slack",
        summary="Turns any JSON event posted to a webhook into a short human message in a Slack channel.",
        trigger="webhook",
        keywords=("webhook", "slack", "notify", "alert", "event", "message", "channel", "chat"),
        needs=(Needed("slack", ("slack_webhook",), "Slack incoming webhook"),),
        previews={"post": {"preview": True, "would_post_to": "slack"}},
        sample_input={"event": {"type": "deploy.finished", "service": "api", "version": "1.4.2"}},
        definition={
            "inputs": {
                "type": "object",
                "properties": {"event": {"type": "object", "description": "The JSON the webhook received"}},
            },
            "steps": [
                {
                    "id": "write",
                    "type": "llm",
                    "model": SANDBOX_MODEL,
                    "system": "Write one short, friendly sentence for a team chat about this event.",
                    "prompt": "{{ input.event | default({}) | tojson }}",
                    "max_tokens": 200,
                },
                {"id": "post", "type": "send", "connector": "slack", "text": "{{ steps.write.output }}"},
            ],
            "output": {"message": "{{ steps.write.output }}"},
        },
    ),
    Template(
        slug="daily-db-report",
        name="Daily database report by e-mail",
        summary=(
            "Queries yesterday's figures, has the model write a short report and e-mails it "
            "(schedule it daily)."
        ),
        trigger="schedule",
        keywords=("report", "daily", "database", "sql", "email", "e-mail", "schedule", "summary", "figures"),
        needs=(
            Needed("reports_db", ("postgres", "mysql"), "PostgreSQL or MySQL database"),
            Needed("mail", ("smtp",), "SMTP server"),
        ),
        previews={
            "figures": {"rows": [{"day": "yesterday", "orders": 42, "revenue": 1234.5}], "row_count": 1},
            "send": {"preview": True, "would_mail": "reports@example.com"},
        },
        sample_input={"to": "reports@example.com"},
        definition={
            "inputs": {
                "type": "object",
                "properties": {"to": {"type": "string", "description": "Who receives the report"}},
            },
            "steps": [
                {
                    "id": "figures",
                    "type": "db_query",
                    "connector": "reports_db",
                    "sql": (
                        "SELECT current_date - 1 AS day, count(*) AS orders "
                        "FROM orders WHERE created_at >= current_date - 1"
                    ),
                },
                {
                    "id": "write",
                    "type": "llm",
                    "model": SANDBOX_MODEL,
                    "system": "You write a three-sentence daily business report from figures.",
                    "prompt": "Figures: {{ steps.figures.output | tojson }}",
                },
                {
                    "id": "send",
                    "type": "send",
                    "connector": "mail",
                    "to": "{{ input.to or 'reports@example.com' }}",
                    "subject": "Daily report",
                    "body": "{{ steps.write.output }}",
                },
            ],
            "output": {"report": "{{ steps.write.output }}"},
        },
    ),
    Template(
        slug="email-summarizer",
        name="E-mail summarizer",
        summary="Summarizes an incoming e-mail into a gist and action items (give it an e-mail trigger).",
        trigger="email",
        keywords=("email", "e-mail", "mail", "summarize", "summary", "inbox", "action", "items"),
        sample_input={
            "from": "ceo@acme.example",
            "subject": "Q3 plan",
            "text": "Please prepare the Q3 plan by Friday.",
        },
        definition={
            "inputs": {
                "type": "object",
                "properties": {
                    "from": {"type": "string"},
                    "subject": {"type": "string"},
                    "text": {"type": "string", "description": "The e-mail's text"},
                },
                "required": ["text"],
            },
            "steps": [
                {
                    "id": "summarize",
                    "type": "llm",
                    "model": SANDBOX_MODEL,
                    "system": "Summarize the e-mail in two sentences and list the action items.",
                    "prompt": "From: {{ input['from'] | default('unknown') }}\n"
                    "Subject: {{ input.subject | default('') }}\n\n{{ input.text }}",
                    "json_schema": {
                        "type": "object",
                        "properties": {
                            "gist": {"type": "string"},
                            "action_items": {"type": "array", "items": {"type": "string"}},
                        },
                        "required": ["gist", "action_items"],
                    },
                }
            ],
            "output": "{{ steps.summarize.output }}",
        },
    ),
    Template(
        slug="lead-enrichment",
        name="Lead enrichment over an HTTP API",
        summary="Looks a new lead's company up in your CRM or data API and scores the lead with the model.",
        trigger="api",
        keywords=("lead", "enrich", "crm", "sales", "company", "http", "api", "score", "prospect"),
        needs=(Needed("crm", ("http",), "HTTP API (your CRM or a data provider)"),),
        previews={
            "lookup": {"status": 200, "json": {"name": "Acme", "employees": 120, "industry": "software"}}
        },
        sample_input={"email": "jane@acme.example", "company": "acme.example"},
        definition={
            "inputs": {
                "type": "object",
                "properties": {
                    "email": {"type": "string"},
                    "company": {"type": "string", "description": "The company's domain"},
                },
                "required": ["email"],
            },
            "steps": [
                {
                    "id": "lookup",
                    "type": "http",
                    "connector": "crm",
                    "method": "GET",
                    "path": "/companies",
                    "query": {"domain": "{{ input.company | default(input.email.split('@')[-1]) }}"},
                },
                {
                    "id": "score",
                    "type": "llm",
                    "model": SANDBOX_MODEL,
                    "system": "Score this sales lead from 0 to 100 and say why in one sentence.",
                    "prompt": "Lead: {{ input.email }}\nCompany data: {{ steps.lookup.output | tojson }}",
                    "json_schema": {
                        "type": "object",
                        "properties": {
                            "score": {"type": "integer", "minimum": 0, "maximum": 100},
                            "reason": {"type": "string"},
                        },
                        "required": ["score", "reason"],
                    },
                },
            ],
            "output": {
                "email": "{{ input.email }}",
                "company": "{{ steps.lookup.output }}",
                "lead": "{{ steps.score.output }}",
            },
        },
    ),
)

BY_SLUG = {template.slug: template for template in TEMPLATES}


def template_get(slug: str) -> Template | None:
    return BY_SLUG.get(slug)


def template_instance(template: Template, tenant_id: Any) -> Instance:
    """The template's definition for this tenant: connector steps it cannot serve become previews."""
    names = {need.name for need in template.needs}
    kinds = dict(Connector.objects.filter(tenant_id=tenant_id, name__in=names).values_list("name", "kind"))
    missing = tuple(need for need in template.needs if kinds.get(need.name) not in need.kinds)
    missing_names = {need.name for need in missing}
    definition = copy.deepcopy(template.definition)
    steps = []
    for step in definition["steps"]:
        if step.get("connector") in missing_names and step["type"] in {"send", "http", "db_query"}:
            kept = {key: step[key] for key in ("id", "needs", "when") if key in step}
            step = {
                **kept,
                "type": "transform",
                "value": template.previews.get(step["id"], {"preview": True}),
            }
        steps.append(step)
    definition["steps"] = steps
    return Instance(template, definition, missing)


def template_closest(description: str) -> Template:
    """The template whose keywords best match the words of a description (the sandbox generator's pick)."""
    words = {w.strip(".,;:!?()\"'").lower() for w in description.split()}
    return max(TEMPLATES, key=lambda t: (len(words & set(t.keywords)), -TEMPLATES.index(t)))
