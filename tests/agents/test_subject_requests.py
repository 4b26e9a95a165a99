"""Data subject requests through the management commands: export finds what a person's identifier is
in (runs, steps, trigger events, notifications), erase replaces it with a marker, and the runs and the
audit chain stay intact."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.runs.execution import run_execute
from agents.runs.models import Run, StepRun
from tenants.audit import audit_verify_tenant
from tenants.models import AuditEvent
from tests.agents.helpers import create_agent

pytestmark = pytest.mark.django_db

PERSON = "Ada.Lovelace@example.org"
ECHO = {
    "inputs": {"type": "object", "properties": {"from": {"type": "string"}, "text": {"type": "string"}}},
    "steps": [{"id": "reply", "type": "transform", "value": "Thanks {{ input.from }}: {{ input.text }}"}],
}


@pytest.fixture
def runs(world, alice_client, charlie_client) -> dict[str, str]:
    agent = create_agent(alice_client, ECHO, name="inbox")
    other = create_agent(charlie_client, ECHO, name="inbox")
    ids = {}
    for key, client, agent_id, sender in (
        ("hers", alice_client, agent, PERSON.lower()),
        ("someone", alice_client, agent, "bob@example.org"),
        ("other_tenant", charlie_client, other, PERSON),
    ):
        created = client.post(
            f"/api/v1/agents/{agent_id}/runs", {"input": {"from": sender, "text": "hello"}}, format="json"
        ).json()
        run_execute(created["id"])
        ids[key] = created["id"]
    return ids


def test_export_then_erase_round_trip(world, runs, tmp_path):
    out = tmp_path / "subject.json"
    call_command("subject_export", "tenant-a", PERSON, "--out", str(out), stdout=io.StringIO())
    report = json.loads(out.read_text())
    assert [r["id"] for r in report["found"]["runs"]] == [runs["hers"]]  # case-insensitive, this tenant only
    assert set(report["found"]["runs"][0]["fields"]) == {"input", "output"}
    assert [s["run_id"] for s in report["found"]["steps"]] == [runs["hers"]]

    dry = io.StringIO()
    call_command("subject_erase", "tenant-a", PERSON, stdout=dry)
    assert "Would erase" in dry.getvalue()
    assert PERSON.lower() in json.dumps(Run.objects.get(pk=runs["hers"]).input)

    call_command("subject_erase", "tenant-a", PERSON, "--yes", stdout=io.StringIO())
    erased = Run.objects.get(pk=runs["hers"])
    assert erased.input["erased"] == "[erased: data subject request]"
    assert erased.status == Run.Status.SUCCEEDED  # the run and its metadata stay
    assert PERSON.lower() not in json.dumps(StepRun.objects.get(run_id=runs["hers"]).output)
    assert Run.objects.get(pk=runs["someone"]).input["from"] == "bob@example.org"
    assert Run.objects.get(pk=runs["other_tenant"]).input["from"] == PERSON  # another tenant's: untouched

    again = tmp_path / "again.json"
    call_command("subject_export", "tenant-a", PERSON, "--out", str(again), stdout=io.StringIO())
    assert all(rows == [] for rows in json.loads(again.read_text())["found"].values())
    events = AuditEvent.objects.filter(tenant=world.tenant_a, action__startswith="subject.")
    assert [e.action for e in events.order_by("seq")] == [
        "subject.exported",
        "subject.erased",
        "subject.exported",
    ]
    assert all(PERSON.lower() not in json.dumps(e.changes).lower() for e in events)
    assert audit_verify_tenant(world.tenant_a) is None


def test_a_too_short_identifier_is_refused(world):
    with pytest.raises(CommandError, match="at least 3"):
        call_command("subject_erase", "tenant-a", "a", "--yes", stdout=io.StringIO())
