"""``manage.py seed_demo``: the demo tenant "acme" with an owner and an API key. Safe to re-run.

The generated password and key are kept in ``FALCON_VAR_DIR/demo-credentials.json`` (mode 0600) so a
re-run prints the same ones; if they no longer work (file lost, key revoked) new ones are issued.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from allauth.account.models import EmailAddress
from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from agents.runs.execution import run_execute
from agents.runs.models import Run
from agents.runs.services import run_start
from agents.workflows.models import Agent
from agents.workflows.services import agent_create, version_publish
from billing.services import plan_set
from tenants.audit import Actor
from tenants.models import Membership, Tenant, User
from tenants.permissions import Role
from tenants.services import api_key_authenticate, api_key_create, member_add, tenant_create

DEMO_SLUG = "acme"
DEMO_EMAIL = "owner@acme.example"
COMPLIANCE_GROUP = "Compliance"


class Command(BaseCommand):
    help = "Create (or re-print) the demo tenant 'acme', its owner and an API key."

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(settings.VAR_DIR) / "demo-credentials.json"
        saved: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        actor = Actor.system("cli:seed_demo")
        with transaction.atomic():
            owner = User.objects.filter(email=DEMO_EMAIL).first()
            if owner is None:
                owner = User.objects.create_user(email=DEMO_EMAIL, name="Acme Owner")
            password = saved.get("password", "")
            if not password or not owner.check_password(password):
                password = secrets.token_urlsafe(12)
                owner.set_password(password)
            # The demo owner may also open the compliance console (read-only).
            owner.is_staff = True
            owner.save()
            owner.groups.add(Group.objects.get(name=COMPLIANCE_GROUP))
            EmailAddress.objects.update_or_create(
                user=owner, email=DEMO_EMAIL, defaults={"verified": True, "primary": True}
            )
            tenant = Tenant.objects.filter(slug=DEMO_SLUG).first()
            if tenant is None:
                tenant = tenant_create(slug=DEMO_SLUG, name="Acme Corp", owner=owner, actor=actor)
                # Team shows every feature (audit export, MFA enforcement); `plan_set acme free` to try Free.
                plan_set(tenant=tenant, plan="team", actor=actor)
            elif not Membership.objects.filter(tenant=tenant, user=owner).exists():
                member_add(tenant=tenant, user=owner, role=Role.OWNER, actor=actor)
            key = saved.get("api_key", "")
            if not key or api_key_authenticate(key) is None:
                _, key = api_key_create(
                    tenant=tenant,
                    name="demo",
                    scopes=["read", "write", "run", "admin", "audit"],
                    actor=actor,
                    acting_role=None,
                    created_by=owner,
                )
            agent = _demo_agent(tenant, owner, actor)
        if not Run.objects.filter(agent=agent).exists():
            # A first run, so the dashboard opens on something real (the sandbox model: no network).
            agent.refresh_from_db()
            run, _ = run_start(agent=agent, input={"name": "Ada"}, actor=actor, enqueue=False)
            run_execute(run.pk)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"password": password, "api_key": key}))
        path.chmod(0o600)
        base = settings.FALCON_BASE_URL
        run_body = json.dumps({"input": {"name": "Ada"}, "wait_s": 10})
        self.stdout.write(
            "\n".join(
                [
                    "Demo tenant 'acme' is ready.",
                    f"  Dashboard:  {base}/  (sign in as {DEMO_EMAIL} / {password})",
                    f"  Console:    {base}/admin/  (same account, read-only compliance view)",
                    f"  API docs:   {base}/api/schema/docs/",
                    f"  API key:    {key}",
                    f"  Try:        curl -H 'Authorization: Bearer {key}' {base}/api/v1/tenant",
                    f"  Usage:      curl -H 'Authorization: Bearer {key}' {base}/api/v1/usage  (Team plan)",
                    f"  Run agent:  curl -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json'"
                    f" -d '{run_body}' {base}/api/v1/agents/{agent.pk}/runs",
                    f"  MCP server: {base}/api/mcp  (header Authorization: Bearer {key})",
                    f"  OpenAI API: base_url={base}/api/openai/v1, api_key={key}, model=agent:{agent.name}",
                ]
            )
        )


DEMO_AGENT = {
    "inputs": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
    "steps": [
        {"id": "greet", "type": "transform", "value": "Hello {{ input.name }}"},
        {
            "id": "reply",
            "type": "llm",
            "model": "sandbox/echo",
            "system": "You are a friendly greeter.",
            "prompt": "{{ steps.greet.output }}",
        },
    ],
    "output": {"greeting": "{{ steps.greet.output }}", "model_said": "{{ steps.reply.output }}"},
}


def _demo_agent(tenant: Tenant, owner: User, actor: Actor) -> Any:
    """A published agent on the offline sandbox model, so a first run needs no API key."""
    agent = Agent.objects.filter(tenant=tenant, name="hello").first()
    if agent is None:
        agent = agent_create(
            tenant=tenant,
            name="hello",
            description="Greets someone (sandbox model, no network).",
            actor=actor,
            created_by=owner,
            definition=DEMO_AGENT,
        )
        version_publish(version=agent.versions.get(), actor=actor)
    return agent
