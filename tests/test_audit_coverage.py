"""Every service that changes state writes an audit event (directly or through a service that does).

The test reads the service modules, finds each public function that writes to the database (save,
create, update, delete, bulk writes) and fails unless it calls ``audit_record`` or another function
that does. The few writers that deliberately do not audit are listed here with the reason.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

from tenants.audit import audited_modules

ROOT = Path(__file__).resolve().parents[1]
WRITES = {"save", "create", "update", "delete", "bulk_create", "get_or_create", "update_or_create"}
NOT_AUDITED = {
    # bookkeeping, not a change anyone decided
    "api_key_touch": "a throttled last-used timestamp",
    "run_enqueue": "hands an already audited run to the queue",
    "stripe_event_receive": "stores Stripe's raw event; applying it is audited (billing.subscription_synced)",
    "stripe_event_process": "marks the stored event processed; the plan change it causes is audited",
    "meter_report": "usage bookkeeping sent to Stripe; every report row is kept",
    "subscription_locked": "creates the default Free row on first use",
    "billing_notify": "sends e-mail only",
    "user_has_mfa": "reads only",
    "notify": "records a message to send; the notification and its deliveries are the record",
    "notification_deliver": "records a delivery attempt's outcome",
    "trigger_refusal_record": "a refused delivery's record (aggregated), not a change anyone decided",
    "runs_prune": "called by retention_prune, which audits what it removed (runs.pruned)",
    "trigger_events_prune": "called by retention_prune, which audits what it removed (runs.pruned)",
    "connector_secrets_rekey": "called by data_key_replace, which audits the replacement",
    "trigger_secrets_rekey": "called by data_key_replace, which audits the replacement",
    "channel_secrets_rekey": "called by data_key_replace, which audits the replacement",
    "runs_sweep": "re-queues or fails runs whose worker died: the run records it (claims, error)",
    "runs_resume_due": "wakes runs whose timed wait is over, as the workflow asked",
    "runs_dispatch_tenant": "hands already audited queued runs to workers",
    "run_enqueue_now": "hands an already audited run to the queue",
    "tenant_data_key": "creates the tenant's data key on first use",
    "data_key_rewrap": "re-wraps a key under the active master key; encryption_rotate reports it",
    "compliance_group_ensure": "installation set-up after migrate: the Compliance group's view rights",
}


def _calls(node: ast.AST) -> set[str]:
    names = set()
    for child in ast.walk(node):
        if isinstance(child, ast.Call):
            func = child.func
            if isinstance(func, ast.Name):
                names.add(func.id)
            elif isinstance(func, ast.Attribute):
                names.add(func.attr)
    return names


def _service_modules() -> list[Path]:
    paths = []
    for name in audited_modules():
        module = importlib.import_module(name)
        assert module.__file__ is not None
        paths.append(Path(module.__file__))
    return paths


def test_every_app_registers_its_service_modules():
    names = audited_modules()
    for app in ("tenants", "connectors", "billing", "agents"):
        assert any(name.startswith(f"{app}.") for name in names), f"{app} registers no service module"
    assert "agents.runs.services" in names


def _functions() -> dict[str, tuple[Path, ast.FunctionDef]]:
    found: dict[str, tuple[Path, ast.FunctionDef]] = {}
    for path in _service_modules():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                found[node.name] = (path, node)
    return found


def test_every_state_changing_service_writes_an_audit_event():
    functions = _functions()
    assert len(functions) > 40, "the service modules were not found"
    calls = {name: _calls(node) for name, (_, node) in functions.items()}
    auditing = {"audit_record"}
    changed = True
    while changed:  # a service that calls an auditing service audits too
        changed = False
        for name, called in calls.items():
            if name not in auditing and called & auditing:
                auditing.add(name)
                changed = True
    silent = []
    for name, (path, _) in sorted(functions.items()):
        if name.startswith("_") or name in NOT_AUDITED:
            continue
        if calls[name] & WRITES and name not in auditing:
            silent.append(f"{path.relative_to(ROOT)}:{name}")
    assert silent == [], f"these services change state without an audit event: {silent}"


def test_the_exceptions_are_still_real_services():
    functions = _functions()
    assert set(NOT_AUDITED) <= set(functions), set(NOT_AUDITED) - set(functions)
