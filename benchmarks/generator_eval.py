"""The Agent Generator against a real provider: the golden descriptions, one generation each.

Prints, per description and in total: valid on the first try, valid after repair, policy clean,
dry run succeeded, tokens and seconds per generation. Needs a provider key (OPENAI_API_KEY,
ANTHROPIC_API_KEY or GEMINI_API_KEY) and FALCON_GENERATOR_MODEL naming a model of it; without one it
says so and exits 0 (the offline golden set runs in the test suite).

    FALCON_GENERATOR_MODEL=openai/gpt-4o-mini OPENAI_API_KEY=… make bench
"""

from __future__ import annotations

import os
import sys
import time

from benchmarks.common import setup_django

DESCRIPTIONS = [
    "Summarize a text into three bullet points.",
    "Triage support tickets by category and urgency and route urgent ones to on-call.",
    "Translate each line of a list into French.",
    "Post a one-line summary of each deploy webhook event to our Slack connector 'team', after approval.",
    "Look a company up in our CRM connector 'crm' and score the lead from 0 to 100.",
    "Read yesterday's orders from the database connector 'db' and write a short report.",
    "Extract the invoice number, date and total from an e-mail's text.",
    "Classify the sentiment of a product review as positive, neutral or negative.",
    "Draft a polite reply to a customer complaint, for a person to approve before sending.",
    "Turn meeting notes into a list of action items with owners.",
]


def main() -> None:
    model = os.environ.get("FALCON_GENERATOR_MODEL", "")
    provider = model.split("/", 1)[0] if "/" in model else ""
    keys = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "gemini": "GEMINI_API_KEY"}
    if provider not in keys or not os.environ.get(keys[provider]):
        print(
            "generator_eval: skipped — set FALCON_GENERATOR_MODEL to a provider model "
            "(e.g. openai/gpt-4o-mini) and that provider's key to measure a real model; "
            "the offline golden set runs in make test."
        )
        return
    setup_django()
    from agents.generator.models import Generation
    from agents.generator.services import generation_execute, generation_request
    from billing.services import plan_set
    from connectors.services import connector_create
    from tenants.audit import Actor
    from tenants.models import User
    from tenants.services import tenant_create

    actor = Actor.system("benchmark")
    owner = User.objects.create_user(email=f"eval-{time.time_ns()}@example.com")
    tenant = tenant_create(slug=f"eval-{time.time_ns() % 10**9}", name="Eval", owner=owner, actor=actor)
    plan_set(tenant=tenant, plan="enterprise", actor=actor)
    for name, kind, config, secrets in (
        ("team", "slack_webhook", {}, {"url": "https://hooks.slack.com/services/T/B/X"}),
        ("crm", "http", {"base_url": "https://crm.example.com"}, {}),
        ("db", "postgres", {"host": "93.184.216.34", "database": "shop", "user": "reader"}, {}),
    ):
        connector_create(
            tenant=tenant, name=name, kind=kind, config=config, secrets=secrets, actor=actor, created_by=None
        )
    rows = []
    for description in DESCRIPTIONS:
        started = time.monotonic()
        generation = generation_request(tenant=tenant, description=description, actor=actor, created_by=owner)
        generation_execute(generation.pk)
        g = Generation.objects.get(pk=generation.pk)
        first_ok = bool(g.attempts) and not [p for p in g.attempts[0]["problems"] if p["severity"] == "error"]
        valid = g.status == "succeeded" and not g.blocking
        policy_clean = valid and not [p for p in g.problems if p["severity"] == "error"]
        dry_ok = isinstance(g.dry_run, dict) and g.dry_run.get("status") == "succeeded"
        rows.append(
            (
                description,
                first_ok,
                valid,
                policy_clean,
                dry_ok,
                g.prompt_tokens + g.completion_tokens,
                time.monotonic() - started,
            )
        )
    print(
        f"{'description':60} {'1st try':>7} {'valid':>6} {'policy':>6} {'dry run':>7} {'tokens':>7} {'s':>6}"
    )
    for d, first, valid, policy, dry, tokens, seconds in rows:
        print(f"{d[:60]:60} {first!s:>7} {valid!s:>6} {policy!s:>6} {dry!s:>7} {tokens:7d} {seconds:6.1f}")
    n = len(rows)
    counts = [f"{sum(bool(r[k]) for r in rows)}/{n}" for k in (1, 2, 3, 4)]
    tokens = sum(r[5] for r in rows) // n
    seconds = sum(r[6] for r in rows) / n
    print(
        f"{'total':60} {counts[0]:>7} {counts[1]:>6} {counts[2]:>6} {counts[3]:>7} {tokens:7d} {seconds:6.1f}"
    )


if __name__ == "__main__":
    main()
    sys.exit(0)
