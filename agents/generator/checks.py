"""What a generated definition must pass before anyone sees it, in layers, each problem with its JSON
path: the schema and references (the same validation as saving a version), then policy (models and
connectors the tenant may use, no secrets written inline, outbound HTTP only through connectors,
writes behind an approval, declared inputs only, cost within the caps). And the deterministic repairs
made before asking the model again."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from agents.engine.graph import scope_deps
from agents.engine.spec import PROVIDERS, WorkflowSpec, provider_of
from agents.engine.types import LlmRequest
from agents.errors import WorkflowInvalid
from agents.llm.catalogue import model_refusal
from agents.llm.gateway import llm_estimate, model_check
from agents.workflows.services import definition_validate
from billing.models import AgentSpendCap, Subscription
from billing.quotas import usage_summary
from connectors.kinds import KINDS
from connectors.models import Connector
from tenants.models import Membership, Tenant

ERROR, WARNING = "error", "warning"

# Key-like strings: provider keys, cloud keys, tokens, private keys, and long random-looking values.
SECRET_PATTERNS = (
    re.compile(r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"),
    re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}"),
    re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}"),
    re.compile(r"\bwhsec_[A-Za-z0-9+/=]{16,}"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{20,}"),
    re.compile(r"(?i)(?:api[_-]?key|secret|password|token)\s*[:=]\s*['\"]?[A-Za-z0-9._~+/=-]{12,}"),
)
INPUT_REF = re.compile(r"\binput\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['\"]([^'\"]+)['\"]\s*\])")
READ_SQL = re.compile(r"^\s*(?:\(\s*)*(?:select|with|show|explain|values)\b", re.IGNORECASE)
WRITE_SQL = re.compile(r"\b(?:insert|update|delete|merge|create|drop|alter|truncate|grant|revoke)\b", re.I)
ALIASES = {  # what models tend to write -> Falcon's provider/model
    "gpt-": "openai/",
    "o1": "openai/",
    "o3": "openai/",
    "o4": "openai/",
    "claude-": "anthropic/",
    "gemini-": "gemini/",
    "llama": "ollama/",
}


@dataclass(frozen=True)
class Context:
    """What the checks know of the tenant (read once per generation)."""

    tenant: Tenant
    member: Membership | None
    connectors: dict[str, str]  # name -> kind
    models: list[str]
    require_approval_for_writes: bool = True
    agent_id: Any = None  # a refinement's agent (its own spend cap applies)


def problem(code: str, path: str, message: str, severity: str = ERROR) -> dict[str, str]:
    return {"code": code, "severity": severity, "path": path, "message": message}


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


def _steps(definition: dict[str, Any], path: str = "steps") -> Iterator[tuple[str, dict[str, Any]]]:
    for index, step in enumerate(definition.get("steps") or []):
        if isinstance(step, dict):
            yield f"{path}[{index}]", step
            if step.get("type") == "map":
                yield from _steps(step, f"{path}[{index}].steps")


def _writes(step: dict[str, Any], connectors: dict[str, str]) -> str | None:
    """Why a step changes something outside the run, or None."""
    kind = step.get("type")
    if kind == "send":
        return "sends a message"
    if kind == "http" and str(step.get("method", "GET")).upper() != "GET":
        return f"makes an HTTP {str(step.get('method')).upper()}"
    if kind == "db_query":
        sql = str(step.get("sql", ""))
        if not READ_SQL.match(sql) or WRITE_SQL.search(sql):
            return "writes to a database"
    if kind == "agent":
        for tool in step.get("tools") or []:
            if not isinstance(tool, dict):
                continue
            method = str((tool.get("operation") or {}).get("method", "GET")).upper()
            if tool.get("type") in ("send", "db_query") or (tool.get("type") == "http" and method != "GET"):
                return f"gives the model a {tool.get('type')} tool that can write"
    return None


def _approved_before(spec: WorkflowSpec) -> dict[str, bool]:
    """Top-level step id -> whether an approval wait runs before it (directly or transitively)."""
    deps = scope_deps(spec.steps)
    approvals = {s.id for s in spec.steps if s.type == "wait" and getattr(s, "approval", False)}
    result: dict[str, bool] = {}

    def before(step_id: str, seen: frozenset[str]) -> bool:
        if step_id in result:
            return result[step_id]
        found = any(
            d in approvals or (d not in seen and before(d, seen | {d})) for d in deps.get(step_id, [])
        )
        result[step_id] = found
        return found

    for step in spec.steps:
        before(step.id, frozenset({step.id}))
    return result


def validation_problems(definition: Any, ctx: Context) -> tuple[WorkflowSpec | None, list[dict[str, str]]]:
    """Layers one and two: the schema, then references and what the workflow names."""
    try:
        spec = definition_validate(tenant=ctx.tenant, definition=definition, member=ctx.member)
    except WorkflowInvalid as exc:
        return None, [problem(p.code, f"definition.{p.path}", p.message) for p in exc.problems]
    return spec, []


def policy_problems(
    definition: dict[str, Any], spec: WorkflowSpec | None, ctx: Context
) -> list[dict[str, str]]:
    """Layer three: what this tenant's policy allows (runs on invalid definitions too, where it can)."""
    found: list[dict[str, str]] = []
    for path, text in _walk(definition, "definition"):
        if any(p.search(text) for p in SECRET_PATTERNS):
            found.append(
                problem(
                    "inline_secret",
                    path,
                    "This looks like a secret written into the workflow; use a connector.",
                )
            )
    declared = set(((definition.get("inputs") or {}).get("properties") or {}).keys())
    for path, step in _steps(definition):
        kind = step.get("type")
        for where in ["model", *[f"fallbacks[{i}]" for i, _ in enumerate(step.get("fallbacks") or [])]]:
            model = step.get("model") if where == "model" else step["fallbacks"][int(where[10:-1])]
            if (
                kind in ("llm", "agent")
                and isinstance(model, str)
                and (why := model_refusal(ctx.tenant.pk, model))
            ):
                found.append(problem("model_not_allowed", f"definition.{path}.{where}", why))
        connector = str(step.get("connector") or "")
        connector_kind = ctx.connectors.get(connector, "")
        served = KINDS[connector_kind].step_types if connector_kind in KINDS else ()
        if kind in ("http", "db_query", "send") and connector_kind and kind not in served:
            found.append(
                problem(
                    "connector_kind_mismatch",
                    f"definition.{path}.connector",
                    f"connector {connector!r} ({connector_kind}) cannot serve a {kind} step",
                )
            )
        if kind == "http" and re.match(r"^\s*[a-z][a-z0-9+.-]*://", str(step.get("path", "")), re.I):
            found.append(
                problem(
                    "raw_url",
                    f"definition.{path}.path",
                    "Outbound HTTP goes through a connector: give a path relative to its base URL.",
                )
            )
        for field_path, text in _walk(step, f"definition.{path}"):
            for match in INPUT_REF.finditer(text):
                name = match.group(1) or match.group(2)
                if "{" in text and name not in declared:
                    found.append(
                        problem(
                            "undeclared_input",
                            field_path,
                            f"the template reads input.{name}, which the input schema does not declare",
                        )
                    )
    if ctx.require_approval_for_writes and spec is not None:
        approved = _approved_before(spec)
        for index, step in enumerate(definition.get("steps") or []):
            if not isinstance(step, dict):
                continue
            writes = [_writes(step, ctx.connectors)] + [
                _writes(sub, ctx.connectors) for sub in (step.get("steps") or []) if isinstance(sub, dict)
            ]
            why = next((w for w in writes if w), None)
            if why and not approved.get(str(step.get("id")), False):
                found.append(
                    problem(
                        "write_without_approval",
                        f"definition.steps[{index}]",
                        f"this step {why}: put an approval wait before it (or turn the rule off)",
                    )
                )
    found += _cost_problems(definition, ctx)
    return _unique(found)


def estimate_run_cost(definition: dict[str, Any]) -> tuple[int, Decimal]:
    """Tokens and USD one run may use at most, from each model step's prompt size and budget."""
    tokens, cost = 0, Decimal(0)
    for _, step in _steps(definition):
        if step.get("type") not in ("llm", "agent") or not isinstance(step.get("model"), str):
            continue
        prompt = step.get("prompt") if isinstance(step.get("prompt"), str) else "(library prompt)"
        request = LlmRequest(
            model=step["model"],
            messages=[
                {"role": "system", "content": str(step.get("system") or "")},
                {"role": "user", "content": prompt},
            ],
            max_tokens=step.get("max_tokens") if isinstance(step.get("max_tokens"), int) else None,
        )
        if model_check(step["model"]) is not None:
            continue  # an unknown model is reported by validation, not here
        t, c = llm_estimate(request)
        rounds = int(step.get("max_iterations") or 8) if step.get("type") == "agent" else 1
        tokens, cost = tokens + t * rounds, cost + c * rounds
    return tokens, cost


def _cost_problems(definition: dict[str, Any], ctx: Context) -> list[dict[str, str]]:
    """One run's estimated cost against what is left: the plan's platform credit, the tenant's
    monthly spend cap and, for a refinement, the agent's own cap."""
    _, cost = estimate_run_cost(definition)
    if cost <= 0:
        return []
    usage = usage_summary(ctx.tenant)["metrics"]
    left: list[tuple[str, Decimal]] = []
    spend = usage.get("llm_spend_usd") or {}
    if spend.get("limit") is not None:
        left.append(
            (
                "the plan's monthly LLM credit",
                Decimal(str(spend["limit"])) - Decimal(str(spend.get("used") or 0)),
            )
        )
    cap = Subscription.objects.filter(tenant=ctx.tenant).values_list("spend_cap_usd", flat=True).first()
    if cap is not None:
        used = Decimal(str((usage.get("llm_cost_usd") or {}).get("used") or 0))
        left.append(("the organization's monthly spend cap", cap - used))
    if ctx.agent_id is not None:
        agent_cap = (
            AgentSpendCap.objects.filter(agent_id=ctx.agent_id).values_list("monthly_usd", flat=True).first()
        )
        if agent_cap is not None:
            left.append(("the agent's monthly spend cap", agent_cap))
    return [
        problem(
            "over_budget",
            "definition",
            f"one run may cost up to ${cost:.4f}, more than {what} (${room:.2f} left)",
        )
        for what, room in left
        if room < cost
    ]


def _unique(problems: list[dict[str, str]]) -> list[dict[str, str]]:
    seen, result = set(), []
    for p in problems:
        key = (p["code"], p["path"], p["message"])
        if key not in seen:
            seen.add(key)
            result.append(p)
    return result


# --- deterministic repairs ------------------------------------------------------------------------------


def repair(definition: Any, ctx: Context) -> tuple[Any, list[str]]:
    """Unambiguous fixes, each said in words: duplicate ids renamed, ``needs`` naming no step dropped,
    model aliases written as provider/model (or replaced by an allowed model of the same provider)."""
    if not isinstance(definition, dict) or not isinstance(definition.get("steps"), list):
        return definition, []
    fixed = copy.deepcopy(definition)
    notes: list[str] = []
    _repair_steps(fixed["steps"], ctx, notes, "steps", set())
    if not isinstance(fixed.get("inputs"), dict):
        fixed["inputs"] = {"type": "object"}
        notes.append("inputs: set to an object schema")
    return fixed, notes


def _repair_steps(steps: list[Any], ctx: Context, notes: list[str], path: str, taken: set[str]) -> None:
    ids = []
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        step_id = str(step.get("id", ""))
        if step_id in taken:
            number = 2
            while f"{step_id}_{number}" in taken:
                number += 1
            step["id"] = f"{step_id}_{number}"
            notes.append(f"{path}[{index}].id: renamed the duplicate {step_id!r} to {step['id']!r}")
        taken.add(str(step["id"]))
        ids.append(str(step["id"]))
    known = set(ids)
    for index, step in enumerate(steps):
        if not isinstance(step, dict):
            continue
        if isinstance(step.get("needs"), list):
            kept = [n for n in step["needs"] if n in known and n != step.get("id")]
            if kept != step["needs"]:
                dropped = [n for n in step["needs"] if n not in kept]
                notes.append(f"{path}[{index}].needs: dropped {dropped} (no such earlier step)")
                step["needs"] = kept
        for key in ("model",):
            if isinstance(step.get(key), str) and step.get("type") in ("llm", "agent"):
                better = _model_alias(step[key], ctx)
                if better != step[key]:
                    notes.append(f"{path}[{index}].{key}: {step[key]!r} -> {better!r}")
                    step[key] = better
        if step.get("type") == "map" and isinstance(step.get("steps"), list):
            _repair_steps(step["steps"], ctx, notes, f"{path}[{index}].steps", taken)


def _model_alias(model: str, ctx: Context) -> str:
    candidate = model.strip()
    if provider_of(candidate) not in PROVIDERS:
        for prefix, provider in ALIASES.items():
            if candidate.lower().startswith(prefix):
                candidate = provider + candidate
                break
    if model_refusal(ctx.tenant.pk, candidate) is None:
        return candidate
    same = [m for m in ctx.models if provider_of(m) == provider_of(candidate)]
    return same[0] if same else (ctx.models[0] if ctx.models else candidate)


def tenant_context(
    tenant: Tenant, member: Membership | None, models: list[str], approval: bool, agent_id: Any = None
) -> Context:
    connectors = dict(Connector.objects.filter(tenant=tenant).values_list("name", "kind"))
    return Context(tenant, member, connectors, models, approval, agent_id)
