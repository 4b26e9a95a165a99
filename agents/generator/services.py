"""The Agent Generator: a description (or a version and an instruction) in, a checked, repaired,
dry-run workflow with test cases out, to review; accepting it creates an agent or a version, never
publishes. Requests and acceptances are audited; model usage counts toward the tenant's quotas."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import jmespath
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from agents.engine.spec import WorkflowSpec, provider_of, spec_for_version
from agents.engine.types import LlmRequest, LlmResult, StepFailure
from agents.generator import checks, prompting
from agents.generator.dryrun import dry_run, example_input
from agents.generator.models import Generation
from agents.llm import gateway
from agents.llm.catalogue import model_refusal, models_for_tenant
from agents.runs.execution import tenant_llm_credentials
from agents.workflows import services as agent_services
from agents.workflows.gallery import template_closest, template_instance
from agents.workflows.models import Agent, AgentVersion
from falcon import jsonlimits
from falcon.errors import Conflict, InvalidInput
from tenants.audit import Actor, audit_record
from tenants.models import Membership, Tenant, User

TASK = "agents.tasks.generation_execute_task"
REPAIR_ROUNDS = 2
TRIGGERS = ("api", "webhook", "schedule", "email")
SANDBOX_LABEL = "[sandbox] "
MAX_DESCRIPTION = 4000


# --- requests ----------------------------------------------------------------------------------------------


def _model_for(tenant: Tenant, model: str | None) -> str:
    chosen = (model or settings.FALCON_GENERATOR_MODEL).strip()
    if model and (why := model_refusal(tenant.pk, chosen)):
        raise InvalidInput(why, code="model_not_allowed", field="model")
    return chosen


def _check_examples(examples: Any) -> list[dict[str, Any]]:
    if not isinstance(examples, list) or len(examples) > 10:
        raise InvalidInput("examples is a list of at most 10 {input, output?} objects.", field="examples")
    for index, example in enumerate(examples):
        if not isinstance(example, dict) or "input" not in example or set(example) - {"input", "output"}:
            raise InvalidInput("Each example is {input, output?}.", field=f"examples[{index}]")
    return examples


@transaction.atomic
def generation_request(
    *,
    tenant: Tenant,
    description: str,
    actor: Actor,
    created_by: User | None,
    examples: Any = (),
    trigger: str = "api",
    model: str | None = None,
    require_approval_for_writes: bool = True,
    base_version: AgentVersion | None = None,
    instruction: str = "",
) -> Generation:
    """A queued generation (the work runs on a worker)."""
    description = description.strip()
    if not description and base_version is None:
        raise InvalidInput("Describe what the agent should do.", field="description")
    if len(description) > MAX_DESCRIPTION or len(instruction) > MAX_DESCRIPTION:
        raise InvalidInput(f"Keep it under {MAX_DESCRIPTION} characters.", field="description")
    if trigger not in TRIGGERS:
        raise InvalidInput(f"trigger is one of {', '.join(TRIGGERS)}.", field="trigger")
    generation = Generation.objects.create(
        tenant=tenant,
        description=description or (base_version.agent.description if base_version else ""),
        examples=_check_examples(list(examples)),
        trigger=trigger,
        model=_model_for(tenant, model),
        require_approval_for_writes=require_approval_for_writes,
        base_version=base_version,
        instruction=instruction.strip(),
        created_by=created_by,
    )
    audit_record(
        tenant=tenant,
        actor=actor,
        action="agent.generation_requested",
        target_type="generation",
        target_id=generation.pk,
        after={
            "model": generation.model,
            "refines": f"{base_version.agent.name} v{base_version.number}" if base_version else None,
        },
    )
    transaction.on_commit(lambda: _enqueue(generation.pk))
    return generation


def _enqueue(generation_id: Any) -> None:
    from falcon.celery import enqueue

    enqueue(TASK, str(generation_id))


def agent_refine(
    *, agent: Agent, instruction: str, actor: Actor, created_by: User | None, **options: Any
) -> Generation:
    if not instruction.strip():
        raise InvalidInput("Say what to change.", field="instruction")
    version = agent.versions.order_by("-number").first()
    if version is None:
        raise Conflict("The agent has no version to refine.", code="no_version")
    return generation_request(
        tenant=agent.tenant, description=agent.description or agent.name, actor=actor, created_by=created_by,
        base_version=version, instruction=instruction, **options,
    )  # fmt: skip


# --- the work -----------------------------------------------------------------------------------------------


def _member(generation: Generation) -> Membership | None:
    if generation.created_by_id is None:
        return None
    return Membership.objects.filter(tenant_id=generation.tenant_id, user_id=generation.created_by_id).first()


def generation_execute(generation_id: Any) -> str:
    """Runs one generation to its end (the Celery task's body); returns the final status."""
    updated = Generation.objects.filter(pk=generation_id, status=Generation.Status.QUEUED).update(
        status=Generation.Status.RUNNING, started_at=timezone.now()
    )
    generation = Generation.objects.select_related("tenant", "base_version").get(pk=generation_id)
    if not updated:
        return generation.status
    try:
        _generate(generation)
        generation.status = Generation.Status.SUCCEEDED
    except StepFailure as exc:
        generation.status = Generation.Status.FAILED
        generation.error = {"code": exc.code, "message": exc.message}
    generation.finished_at = timezone.now()
    generation.save()
    return generation.status


def _generate(generation: Generation) -> None:
    tenant = generation.tenant
    models = models_for_tenant(tenant.pk)
    agent_id = generation.base_version.agent_id if generation.base_version else None
    ctx = checks.tenant_context(
        tenant, _member(generation), models, generation.require_approval_for_writes, agent_id
    )
    base = generation.base_version.definition if generation.base_version else None
    if provider_of(generation.model) == "sandbox":
        answer = _sandbox_answer(generation, base)
        generation.attempts = [{"model": generation.model, "source": answer.pop("_source"), "problems": []}]
        definition, problems, spec = _checked(answer.get("definition"), ctx, generation)
    else:
        answer, definition, problems, spec = _with_model(generation, ctx, models, base)
    generation.name = str(answer.get("name") or "")[:100]
    generation.agent_description = str(answer.get("description") or "")[:2000]
    plan = answer.get("plan")
    generation.plan = [str(p)[:500] for p in plan][:30] if isinstance(plan, list) else []
    generation.definition = definition if isinstance(definition, dict) else None
    generation.problems = problems
    if spec is not None:
        sample = generation.examples[0]["input"] if generation.examples else example_input(spec)
        generation.dry_run = dry_run(spec, sample, tenant_id=tenant.pk)
        generation.tests = _tests(spec, generation)
        if generation.dry_run["status"] != "succeeded":
            generation.problems = [
                *problems,
                checks.problem(
                    "dry_run_failed",
                    f"definition.steps.{(generation.dry_run.get('error') or {}).get('step', '')}".rstrip("."),
                    f"the dry run {generation.dry_run['status']}: "
                    f"{(generation.dry_run.get('error') or {}).get('message', '')}",
                ),
            ]
    if base is not None and isinstance(definition, dict):
        number = generation.base_version.number if generation.base_version else 0
        generation.diff = agent_services.definition_diff(
            base, definition, fromfile=f"v{number}", tofile="proposal"
        )


def _sandbox_answer(generation: Generation, base: dict[str, Any] | None) -> dict[str, Any]:
    """Offline: the closest gallery template by the description's words (or the base, unchanged)."""
    if base is not None:
        return {
            "name": SANDBOX_LABEL
            + (generation.base_version.agent.name if generation.base_version else "agent"),
            "description": generation.description,
            "plan": [
                "The sandbox model cannot rewrite a workflow: this is the current version unchanged.",
                f"Asked: {generation.instruction}",
            ],
            "definition": base,
            "_source": "sandbox: the current version",
        }
    template = template_closest(generation.description)
    instance = template_instance(template, generation.tenant_id)
    plan = [
        f"Picked the closest template, {template.name!r}, from the words of the description "
        "(the sandbox model does not write workflows; configure FALCON_GENERATOR_MODEL or a provider).",
        *[f"{s['id']}: {s['type']} step" for s in instance.definition["steps"]],
    ]
    plan += [
        f"{need.name}: add a {need.label} connector to act for real (now a preview)"
        for need in instance.previewed
    ]
    return {
        "name": SANDBOX_LABEL + template.name,
        "description": template.summary,
        "plan": plan,
        "definition": instance.definition,
        "_source": f"sandbox: template {template.slug}",
    }


def _checked(
    definition: Any, ctx: checks.Context, generation: Generation
) -> tuple[Any, list[dict[str, str]], WorkflowSpec | None]:
    definition, notes = checks.repair(definition, ctx)
    spec, problems = checks.validation_problems(definition, ctx)
    if isinstance(definition, dict):
        problems += checks.policy_problems(definition, spec, ctx)
    problems += [checks.problem("repaired", "definition", note, checks.WARNING) for note in notes]
    blocking = [p for p in problems if p["severity"] == checks.ERROR]
    return definition, problems, spec if not blocking else None


def _with_model(
    generation: Generation, ctx: checks.Context, models: list[str], base: dict[str, Any] | None
) -> tuple[dict[str, Any], Any, list[dict[str, str]], WorkflowSpec | None]:
    prompt = prompting.generator_prompt()
    generation.prompt_version = prompt.version
    brief = prompting.tenant_brief(ctx.tenant, models)
    feedback: list[dict[str, str]] | None = None
    answer: dict[str, Any] = {}
    definition: Any = None
    problems: list[dict[str, str]] = []
    spec: WorkflowSpec | None = None
    attempts: list[dict[str, Any]] = []
    for round_number in range(REPAIR_ROUNDS + 1):
        messages = prompting.messages_for(
            system=prompt.system, description=generation.description, examples=generation.examples,
            trigger=generation.trigger, brief=brief, base=base, instruction=generation.instruction,
            feedback=feedback,
        )  # fmt: skip
        started = time.monotonic()
        result = _call(generation, messages)
        parsed, parse_problem = _parse(result.text)
        if parse_problem is not None:
            round_problems = [parse_problem]
            definition, spec = None, None
        else:
            answer = parsed
            definition, round_problems, spec = _checked(parsed.get("definition"), ctx, generation)
        attempts.append(
            {
                "round": round_number + 1,
                "model": result.model,
                "tokens": result.prompt_tokens + result.completion_tokens,
                "cost_usd": f"{result.cost_usd:.6f}",
                "seconds": round(time.monotonic() - started, 2),
                "problems": round_problems,
            }
        )
        problems = round_problems
        if not [p for p in problems if p["severity"] == checks.ERROR]:
            break
        feedback = [p for p in problems if p["severity"] == checks.ERROR]
    generation.attempts = attempts
    return answer, definition, problems, spec


def _call(generation: Generation, messages: list[dict[str, str]]) -> LlmResult:
    request = LlmRequest(
        model=generation.model,
        messages=messages,
        temperature=0.2,
        max_tokens=4096,
        timeout_s=120,
        response_format=gateway.structured_output_format(generation.model, prompting.ANSWER_SCHEMA),
    )
    credentials = tenant_llm_credentials(generation.tenant_id, request)
    reservation = gateway.llm_budget_reserve(
        request, tenant_id=generation.tenant_id, agent_id=None, own_credentials=credentials is not None
    )
    try:
        result = gateway.llm_complete(request, credentials)
    except BaseException:
        gateway.llm_budget_settle(reservation, None)
        raise
    gateway.llm_budget_settle(reservation, result)
    generation.prompt_tokens += result.prompt_tokens
    generation.completion_tokens += result.completion_tokens
    generation.cost_usd += Decimal(str(result.cost_usd))
    return result


def _parse(text: str) -> tuple[dict[str, Any], dict[str, str] | None]:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`").removeprefix("json").strip()
    try:
        value = jsonlimits.loads(stripped)
    except ValueError as exc:
        return {}, checks.problem("invalid_json", "$", f"the answer is not one JSON object: {exc}"[:300])
    if not isinstance(value, dict) or not isinstance(value.get("definition"), dict):
        return {}, checks.problem(
            "invalid_answer", "$", 'answer {"name", "description", "plan", "definition": {...}}'
        )
    return value, None


# --- test cases ---------------------------------------------------------------------------------------------


def _tests(spec: WorkflowSpec, generation: Generation) -> list[dict[str, Any]]:
    """Cases stored with the version: the builder's examples (their outputs checked exactly), and an
    input synthesized from the schema checked for the output's shape in the dry run."""
    cases: list[dict[str, Any]] = []
    for index, example in enumerate(generation.examples):
        case: dict[str, Any] = {"name": f"example {index + 1}", "input": example["input"], "checks": []}
        if "output" in example:
            case["checks"].append({"expr": "@", "equals": example["output"]})
        else:
            case["checks"].append({"expr": "@ != null", "equals": True})
        cases.append(case)
    sample = example_input(spec)
    shaped = dry_run(spec, sample, tenant_id=generation.tenant_id)
    checks_: list[dict[str, Any]] = [{"expr": "@ != null", "equals": True}]
    output = shaped.get("output")
    if isinstance(output, dict):
        checks_ += [
            {"expr": f'type("{key}")', "equals": _jmes_type(value)} for key, value in list(output.items())[:8]
        ]
    cases.append({"name": "shape of the output", "input": sample, "checks": checks_})
    return cases


def _jmes_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "null"


def check_output(output: Any, case_checks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each check's result: its JMESPath value over the output against the expected value."""
    results = []
    for check in case_checks:
        try:
            got = jmespath.search(check["expr"], output)
            ok = got == check["equals"]
        except jmespath.exceptions.JMESPathError as exc:
            got, ok = f"JMESPath error: {exc}", False
        results.append({"expr": check["expr"], "expected": check["equals"], "got": got, "passed": ok})
    return results


def version_tests_run(*, version: AgentVersion, mode: str, actor: Actor) -> dict[str, Any]:
    """Runs a version's test cases dry (simulated, no side effect) or live (real runs, waited for)."""
    from agents.runs import services as run_services
    from agents.runs.models import Run

    if mode not in ("dry", "live"):
        raise InvalidInput("mode is dry or live.", field="mode")
    if not version.tests:
        raise Conflict("This version has no test cases.", code="no_tests")
    spec = spec_for_version(version.pk, version.definition)
    cases = []
    for case in version.tests:
        if mode == "dry":
            outcome = dry_run(spec, case["input"], tenant_id=version.tenant_id)
            status, output = outcome["status"], outcome["output"]
        else:
            run, _ = run_services.run_start(
                agent=version.agent,
                input=case["input"],
                actor=actor,
                trigger=Run.Trigger.API,
                version=version,
            )
            run = run_services.run_wait(run.pk, 60)
            status, output = run.status, run.output
        results = check_output(output, case.get("checks") or []) if status == "succeeded" else []
        passed = status == "succeeded" and all(r["passed"] for r in results)
        cases.append({"name": case.get("name", ""), "status": status, "passed": passed, "checks": results})
    return {"mode": mode, "passed": all(c["passed"] for c in cases), "cases": cases}


# --- accept -------------------------------------------------------------------------------------------------


@transaction.atomic
def generation_accept(
    *,
    generation: Generation,
    actor: Actor,
    created_by: User | None,
    member: Membership | None,
    agent: Agent | None,
) -> AgentVersion:
    """The agent (or a new version of ``agent``) from a generation without blocking problems; unpublished."""
    generation = Generation.objects.select_for_update().get(pk=generation.pk)
    if generation.status != Generation.Status.SUCCEEDED or generation.definition is None:
        raise Conflict("Only a finished generation can be accepted.", code="generation_not_ready")
    if generation.blocking:
        raise Conflict(
            f"The generation has {len(generation.blocking)} blocking problem(s); fix them in the builder.",
            code="generation_has_problems",
        )
    if agent is None and generation.base_version_id is not None:
        agent = generation.base_version.agent if generation.base_version else None
    note = f"Agent Generator ({generation.model})"
    if agent is None:
        name = generation.name.removeprefix(SANDBOX_LABEL).strip() or "Generated agent"
        taken = set(Agent.objects.filter(tenant_id=generation.tenant_id).values_list("name", flat=True))
        candidate, number = name, 2
        while candidate in taken:
            candidate, number = f"{name} ({number})", number + 1
        agent = agent_services.agent_create(
            tenant=generation.tenant, name=candidate, description=generation.agent_description, actor=actor,
            created_by=created_by, member=member,
        )  # fmt: skip
    version = agent_services.version_create(
        agent=agent,
        definition=generation.definition,
        note=note,
        actor=actor,
        created_by=created_by,
        member=member,
    )
    version.tests = generation.tests
    version.save(update_fields=["tests"])
    generation.accepted_agent = agent
    generation.accepted_version = version.number
    generation.accepted_at = timezone.now()
    generation.save(update_fields=["accepted_agent", "accepted_version", "accepted_at"])
    audit_record(
        tenant=generation.tenant_id,
        actor=actor,
        action="agent.generation_accepted",
        target_type="agent",
        target_id=agent.pk,
        after={"generation": str(generation.pk), "version": version.number},
    )
    return version
