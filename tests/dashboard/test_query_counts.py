"""No N+1 on the list pages: the number of queries of a page does not grow with what it lists."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.prompts.services import prompt_create, prompt_version_create
from agents.triggers.services import trigger_create
from agents.workflows.models import Agent
from connectors.services import connector_create
from tenants.audit import Actor
from tenants.permissions import Role
from tenants.services import api_key_create, invitation_create
from tests.agents.helpers import create_agent
from tests.conftest import member
from tests.dashboard.test_pages import browser_for

pytestmark = pytest.mark.django_db
SYSTEM = Actor.system("tests")


def _agent(world, alice_client, n: int) -> Agent:
    agent_id = create_agent(
        alice_client, {"steps": [{"id": "t", "type": "transform", "value": n}]}, name=f"a{n}"
    )
    return Agent.objects.get(pk=agent_id)


def _connector(world, alice_client, n: int) -> None:
    connector_create(
        tenant=world.tenant_a, name=f"c{n}", kind="http", config={"base_url": "https://api.example.com"},
        secrets={"token": f"secret-token-{n:04d}"}, actor=SYSTEM, created_by=None,
    )  # fmt: skip


def _trigger(world, alice_client, n: int) -> None:
    trigger_create(
        agent=_agent(world, alice_client, 100 + n), name=f"t{n}", kind="webhook", config={},
        input_mapping=None, enabled=True, actor=SYSTEM, created_by=None,
    )  # fmt: skip


def _prompt(world, alice_client, n: int) -> None:
    prompt = prompt_create(tenant=world.tenant_a, name=f"p{n}", description="", actor=SYSTEM, created_by=None)
    prompt_version_create(
        prompt=prompt, template="Hi {{ x }}", input_variables=["x"], actor=SYSTEM, author=None
    )


def _member(world, alice_client, n: int) -> None:
    member(world.tenant_a, Role.BUILDER, f"m{n}@a.example")
    invitation_create(
        tenant=world.tenant_a, email=f"i{n}@a.example", role=Role.VIEWER, actor=SYSTEM, acting_role=None,
        invited_by=world.alice,
    )  # fmt: skip


def _key(world, alice_client, n: int) -> None:
    api_key_create(
        tenant=world.tenant_a,
        name=f"k{n}",
        scopes=["run"],
        actor=SYSTEM,
        acting_role=None,
        created_by=world.alice,
    )


CASES: list[tuple[str, Callable[..., object]]] = [
    ("/agents/", _agent),
    ("/connectors/", _connector),
    ("/triggers/", _trigger),
    ("/prompts/", _prompt),
    ("/organization/members/", _member),
    ("/organization/keys/", _key),
    ("/audit/", _agent),  # every agent adds audit events
    ("/usage/", _agent),
]


@pytest.mark.parametrize(("path", "add"), CASES, ids=[c[0] for c in CASES])
def test_list_pages_make_as_many_queries_for_two_items_as_for_twelve(world, alice_client, path, add):
    browser = browser_for(world.alice)
    for n in range(2):
        add(world, alice_client, n)
    browser.get(path)
    with CaptureQueriesContext(connection) as few:
        assert browser.get(path).status_code == 200
    for n in range(2, 12):
        add(world, alice_client, n)
    with CaptureQueriesContext(connection) as many:
        assert browser.get(path).status_code == 200
    assert len(many) == len(few), [q["sql"][:150] for q in many.captured_queries]
