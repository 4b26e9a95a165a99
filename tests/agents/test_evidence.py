"""Evidence bundles through the management commands: what a period holds, offline verification, and a
changed byte (or a rewritten manifest) caught."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from agents.runs.execution import run_execute
from tenants.models import AuditEvent
from tests.agents.helpers import create_agent

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bundle(world, alice_client, tmp_path) -> Path:
    agent_id = create_agent(
        alice_client, {"steps": [{"id": "a", "type": "transform", "value": "one"}]}, name="ok"
    )
    alice_client.post(
        f"/api/v1/agents/{agent_id}/versions",
        {"definition": {"steps": [{"id": "a", "type": "transform", "value": "{{ input.missing.deeper }}"}]}},
        format="json",
    )
    for _ in range(2):
        run_execute(
            alice_client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {}}, format="json").json()["id"]
        )
    alice_client.post(f"/api/v1/agents/{agent_id}/versions/2/publish")
    run_execute(
        alice_client.post(f"/api/v1/agents/{agent_id}/runs", {"input": {}}, format="json").json()["id"]
    )
    out = tmp_path / "evidence.zip"
    call_command(
        "compliance_export", "tenant-a", "--since", "2000-01-01", "--until", "2999-12-31", "--out", str(out)
    )
    return out


def _files(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_the_bundle_holds_the_period(world, bundle):
    files = _files(bundle)
    assert set(files) == {
        "manifest.json", "audit_events.jsonl", "chain.json", "agent_versions.json", "prompt_versions.json",
        "runs.json", "staff_access.json",
    }  # fmt: skip
    events = [json.loads(line) for line in files["audit_events.jsonl"].decode().splitlines()]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {e["tenant"] for e in events} == {str(world.tenant_a.pk)}
    chain = json.loads(files["chain.json"])
    assert chain["ok"] is True
    live = json.loads(files["agent_versions.json"])
    assert [(v["agent"]["name"], v["version"]) for v in live] == [("ok", 1), ("ok", 2)]
    assert live[0]["live_until"] == live[1]["live_from"]
    runs = json.loads(files["runs.json"])
    assert {(c["status"], c["runs"]) for c in runs["counts"]} == {("succeeded", 2), ("failed", 1)}
    assert runs["failures"][0]["error"]["code"]
    manifest = json.loads(files["manifest.json"])
    assert manifest["tenant"]["slug"] == "tenant-a"
    assert AuditEvent.objects.filter(tenant=world.tenant_a, action="audit.evidence_exported").exists()


def test_an_intact_bundle_verifies_offline(bundle, capsys):
    call_command("compliance_verify", str(bundle))
    assert "intact" in capsys.readouterr().out
    # Without Falcon at all: the standard library only.
    alone = subprocess.run(
        [sys.executable, "-I", str(ROOT / "agents/compliance/verify.py"), str(bundle)],
        capture_output=True,
        text=True,
    )
    assert alone.returncode == 0, alone.stderr
    assert "intact" in alone.stdout


def _rewrite(path: Path, name: str, data: bytes, *, fix_manifest: bool = False) -> None:
    files = _files(path)
    files[name] = data
    if fix_manifest:
        import hashlib

        manifest = json.loads(files["manifest.json"])
        manifest["files"][name] = hashlib.sha256(data).hexdigest()
        files["manifest.json"] = json.dumps(manifest).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for file_name, content in files.items():
            archive.writestr(file_name, content)
    path.write_bytes(buffer.getvalue())


def test_a_changed_byte_fails_verification(bundle):
    runs = _files(bundle)["runs.json"]
    _rewrite(bundle, "runs.json", runs.replace(b'"failed"', b'"faile0"', 1))
    with pytest.raises(CommandError):
        call_command("compliance_verify", str(bundle))


def test_an_edited_event_is_caught_even_with_a_rewritten_manifest(bundle):
    lines = _files(bundle)["audit_events.jsonl"].decode().splitlines()
    event = json.loads(lines[1])
    event["actor_label"] = "someone else"
    lines[1] = json.dumps(event, sort_keys=True)
    _rewrite(bundle, "audit_events.jsonl", ("\n".join(lines) + "\n").encode(), fix_manifest=True)
    from agents.compliance.verify import bundle_verify

    problems = bundle_verify(bundle.read_bytes())
    assert problems == [f"audit event #{event['seq']}: its contents do not match its hash"]
    dropped = [line for i, line in enumerate(lines) if i != 2]
    _rewrite(bundle, "audit_events.jsonl", ("\n".join(dropped) + "\n").encode(), fix_manifest=True)
    assert any("a gap" in p for p in bundle_verify(bundle.read_bytes()))


def test_bad_arguments_are_clear(world, tmp_path):
    with pytest.raises(CommandError, match="No tenant"):
        call_command(
            "compliance_export", "nobody", "--since", "2026-01-01", "--until", "2026-01-31", "--out", "x"
        )
    with pytest.raises(CommandError, match="--since must be a date"):
        call_command(
            "compliance_export", "tenant-a", "--since", "yesterday", "--until", "2026-01-31", "--out", "x"
        )


def test_auditors_download_the_bundle_from_the_dashboard(world, alice_client):
    from agents.compliance.verify import bundle_verify
    from tests.dashboard.test_pages import browser_for

    create_agent(alice_client, {"steps": [{"id": "a", "type": "transform", "value": "one"}]}, name="ok")
    browser = browser_for(world.alice)
    page = browser.get("/audit/").content.decode()
    assert "Evidence bundle" in page
    response = browser.get("/audit/?export=evidence")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/zip"
    assert bundle_verify(response.content) == []
    assert AuditEvent.objects.filter(tenant=world.tenant_a, action="audit.evidence_exported").exists()
