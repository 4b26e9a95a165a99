"""Executes a workflow step by step, reporting each attempt to a checkpoint hook.

The runner is pure: it knows nothing of the database or Celery. Its host passes the outputs of steps
that already succeeded (a resumed run skips them), the values that resume waiting steps, and hooks for
LLM calls, checkpoints, cancellation and sleeping.
"""

from __future__ import annotations

import json
import random
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import jmespath
import jsonschema
from jmespath.exceptions import JMESPathError

from agents.engine import templates
from agents.engine.graph import execution_order, scope_deps
from agents.engine.spec import (
    AgentStep,
    BranchStep,
    ConnectorTool,
    DbQueryStep,
    HttpStep,
    LlmStep,
    MapStep,
    McpStep,
    McpTool,
    PromptRef,
    RetryPolicy,
    SendStep,
    TransformStep,
    WaitStep,
    WorkflowSpec,
    mcp_function_name,
    mcp_tool_parameters,
    provider_of,
    tool_parameters,
)
from agents.engine.types import Hooks, LlmError, LlmRequest, LlmResult, RunCancelled, StepFailure, StepRecord

DEFAULT_STEP_TIMEOUT_S = 120.0
SIDE_EFFECT_RETRY = RetryPolicy(max_attempts=3, backoff_s=1.0, max_backoff_s=30.0)
PURE_RETRY = RetryPolicy(max_attempts=1, backoff_s=0, max_backoff_s=0)
# Bounds on fan-out, so one run cannot occupy a worker's threads or a provider's rate limit alone.
MAX_AGENT_DEPTH = 3  # agents calling agents
MAX_MAP_ITEMS = 1000  # items one map step fans out over
MAX_TOOL_CALLS_PER_ITERATION = 16  # tool calls the model may ask for in one answer


def now() -> datetime:
    return datetime.now(UTC)


class Suspended(Exception):
    def __init__(self, key: str, resume_at: datetime | None, prompt: str | None) -> None:
        super().__init__(key)
        self.key = key
        self.resume_at = resume_at
        self.prompt = prompt


class RunTimedOut(Exception):
    pass


class StepFailed(Exception):
    def __init__(self, key: str, failure: StepFailure) -> None:
        super().__init__(failure.message)
        self.key = key
        self.failure = failure


@dataclass
class RunOutcome:
    status: str
    output: Any = None
    error: dict[str, Any] | None = None
    resume_at: datetime | None = None
    waiting_step: str = ""
    wait_prompt: str | None = None


@dataclass
class _Scope:
    """The template context of one pass over a list of steps."""

    context: dict[str, Any]
    prefix: str
    excluded: dict[str, str] = field(default_factory=dict)  # step id -> reason (branch not taken)
    last_output: Any = None


def backoff_delay(policy: RetryPolicy, attempt: int) -> float:
    """Exponential backoff with full jitter between half and the whole delay."""
    base = min(policy.max_backoff_s, policy.backoff_s * (2 ** (attempt - 1)))
    return base * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not cryptography


def _json_from_text(text: str) -> Any:
    stripped = text.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", stripped, re.DOTALL)
    try:
        return json.loads(fenced.group(1) if fenced else stripped)
    except RecursionError as exc:  # a model's answer nested past the interpreter's limit
        raise ValueError("the JSON is nested too deeply") from exc


class Runner:
    def __init__(
        self,
        spec: WorkflowSpec,
        *,
        input: Any,
        hooks: Hooks,
        run: dict[str, Any] | None = None,
        env: dict[str, Any] | None = None,
        completed: dict[str, Any] | None = None,
        skipped: set[str] | None = None,
        resume_values: dict[str, Any] | None = None,
        deadline: datetime | None = None,
        depth: int = 0,
        key_prefix: str = "",
    ) -> None:
        self.spec = spec
        self.input = input
        self.hooks = hooks
        self.run_info = run or {}
        self.env = env or {}
        self.completed = completed or {}
        self.skipped = skipped or set()
        self.resume_values = resume_values or {}
        self.deadline = deadline
        self.depth = depth
        self.key_prefix = key_prefix
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self._prompt_parameters: dict[str, dict[str, Any]] = {}

    # --- the run ---------------------------------------------------------------------------------------

    def run(self) -> RunOutcome:
        context = {"input": self.input, "steps": {}, "run": self.run_info, "env": self.env}
        scope = _Scope(context=context, prefix=self.key_prefix)
        try:
            self._run_steps(list(self.spec.steps), scope)
            output = scope.last_output
            if self.spec.output is not None:
                try:
                    output = templates.render(self.spec.output, context)
                except templates.TemplateError as exc:
                    code = "output_template" if exc.code == "template_error" else exc.code
                    return RunOutcome("failed", error={"code": code, "message": str(exc), "step": ""})
            return RunOutcome("succeeded", output=output)
        except Suspended as suspended:
            return RunOutcome(
                "waiting",
                resume_at=suspended.resume_at,
                waiting_step=suspended.key,
                wait_prompt=suspended.prompt,
            )
        except RunCancelled:
            return RunOutcome(
                "cancelled", error={"code": "cancelled", "message": "The run was cancelled.", "step": ""}
            )
        except RunTimedOut:
            return RunOutcome(
                "timed_out",
                error={
                    "code": "run_timeout",
                    "step": "",
                    "message": f"The run exceeded its {self.spec.timeout_s:g} s limit.",
                },
            )
        except StepFailed as failed:
            return RunOutcome(
                "failed",
                error={"code": failed.failure.code, "message": failed.failure.message, "step": failed.key},
            )

    def _run_steps(self, steps: list[Any], scope: _Scope) -> None:
        deps = scope_deps(steps)
        order = execution_order(steps)
        for step in order:
            self._check_interrupts()
            key = scope.prefix + step.id
            results = scope.context["steps"]
            if key in self.completed:
                results[step.id] = {"output": self.completed[key], "status": "succeeded"}
                scope.last_output = self.completed[key]
                if isinstance(step, BranchStep):
                    self._apply_branch(step, self.completed[key], scope)
                continue
            reason = self._skip_reason(step, deps[step.id], scope)
            if reason is not None:
                results[step.id] = {"output": None, "status": "skipped"}
                if key not in self.skipped:
                    self._record(
                        StepRecord(
                            key=key,
                            step_id=step.id,
                            step_type=step.type,
                            status="skipped",
                            input={"reason": reason},
                            started_at=now(),
                            finished_at=now(),
                        )
                    )
                continue
            output = self._execute(step, key, scope)
            results[step.id] = {"output": output, "status": "succeeded"}
            scope.last_output = output

    def _skip_reason(self, step: Any, needs: list[str], scope: _Scope) -> str | None:
        if step.id in scope.excluded:
            return scope.excluded[step.id]
        results = scope.context["steps"]
        local = [n for n in needs if n in results]
        if local and all(results[n]["status"] == "skipped" for n in local):
            return "every step it needs was skipped"
        if step.when is not None:
            try:
                if not templates.truthy(step.when, scope.context):
                    return f"condition is false: {step.when}"
            except templates.TemplateError as exc:
                raise StepFailed(
                    scope.prefix + step.id,
                    StepFailure(f"'when' could not be evaluated: {exc}", code=exc.code),
                ) from exc
        return None

    def _check_interrupts(self) -> None:
        if self.hooks.cancelled():
            raise RunCancelled()
        if self.deadline is not None and now() >= self.deadline:
            raise RunTimedOut()

    def _record(self, record: StepRecord) -> None:
        self.prompt_tokens += record.prompt_tokens
        self.completion_tokens += record.completion_tokens
        self.cost_usd += record.cost_usd
        self.hooks.checkpoint(record)

    # --- steps -----------------------------------------------------------------------------------------

    def _execute(self, step: Any, key: str, scope: _Scope) -> Any:
        self.hooks.step_started(key, step.type)
        if isinstance(step, WaitStep):
            return self._wait(step, key, scope)
        if isinstance(step, MapStep):
            return self._map(step, key, scope)
        if isinstance(step, LlmStep):
            return self._with_models(step, key, scope, self._llm_attempt)
        if isinstance(step, AgentStep):
            return self._with_models(step, key, scope, self._agent_attempt)
        side_effect = isinstance(step, HttpStep | DbQueryStep | McpStep)
        policy = step.retry or (SIDE_EFFECT_RETRY if side_effect else PURE_RETRY)
        attempt = 0
        while True:
            attempt += 1
            started = now()
            rendered: Any = None
            try:
                rendered, output = self._pure_or_connector(step, scope)
            except StepFailure as failure:
                self._record(
                    StepRecord(
                        key=key,
                        step_id=step.id,
                        step_type=step.type,
                        attempt=attempt,
                        status="failed",
                        input=rendered,
                        error=_error(failure),
                        started_at=started,
                        finished_at=now(),
                        latency_ms=_ms(started),
                    )
                )
                if failure.retryable and attempt < policy.max_attempts:
                    self.hooks.sleep(backoff_delay(policy, attempt))
                    self._check_interrupts()
                    continue
                raise StepFailed(key, failure) from failure
            self._record(
                StepRecord(
                    key=key,
                    step_id=step.id,
                    step_type=step.type,
                    attempt=attempt,
                    input=rendered,
                    output=output,
                    started_at=started,
                    finished_at=now(),
                    latency_ms=_ms(started),
                )
            )
            if isinstance(step, BranchStep):
                self._apply_branch(step, output, scope)
            return output

    def _pure_or_connector(self, step: Any, scope: _Scope) -> tuple[Any, Any]:
        context = scope.context
        try:
            if isinstance(step, TransformStep):
                if step.jmespath:
                    data = {
                        k: context[k]
                        for k in ("input", "steps", "run", "env", "item", "index")
                        if k in context
                    }
                    return step.jmespath, jmespath.search(step.jmespath, data)
                return None, templates.render(step.value, context)
            if isinstance(step, BranchStep):
                for case in step.cases:
                    if templates.truthy(case.when, context):
                        return None, {"chosen": list(case.steps), "when": case.when}
                return None, {"chosen": list(step.default), "when": None}
            if isinstance(step, HttpStep):
                operation = {
                    "method": step.method,
                    "path": templates.render(step.path, context),
                    "query": templates.render(step.query, context),
                    "headers": templates.render(step.headers, context),
                    "json": templates.render(step.json_body, context),
                    "body": templates.render(step.body, context),
                    "timeout_s": self._timeout(step),  # never beyond the step's or run's deadline
                }
                return operation, self.hooks.call_connector("http", step.connector, operation)
            if isinstance(step, DbQueryStep):
                operation = {
                    "sql": step.sql,
                    "params": templates.render(step.params, context),
                    "timeout_s": self._timeout(step),
                }
                return operation, self.hooks.call_connector("db_query", step.connector, operation)
            if isinstance(step, McpStep):
                operation = {
                    "tool": step.tool,
                    "arguments": templates.render(step.arguments, context),
                    "timeout_s": self._timeout(step),
                }
                return operation, self.hooks.call_connector("mcp", step.connector, operation)
            if isinstance(step, SendStep):
                # A message is sent once unless the author asks for retries (a resend is a duplicate).
                message = {
                    name: templates.render(getattr(step, name), context)
                    for name in ("to", "subject", "body", "text")
                    if getattr(step, name) is not None
                }
                return message, self.hooks.call_connector("send", step.connector, message)
        except templates.TemplateError as exc:
            raise StepFailure(f"template error: {exc}", code=exc.code) from exc
        except JMESPathError as exc:
            raise StepFailure(f"JMESPath error: {exc}", code="jmespath_error") from exc
        raise StepFailure(f"step type {step.type!r} cannot run here", code="unsupported_step")

    def _apply_branch(self, step: BranchStep, output: Any, scope: _Scope) -> None:
        chosen = set(output.get("chosen", [])) if isinstance(output, dict) else set()
        targets = {t for case in step.cases for t in case.steps} | set(step.default)
        for target in targets - chosen:
            scope.excluded[target] = f"not chosen by branch {step.id!r}"

    def _wait(self, step: WaitStep, key: str, scope: _Scope) -> Any:
        if key in self.resume_values:
            value = self.resume_values[key]
            self._record(
                StepRecord(
                    key=key,
                    step_id=step.id,
                    step_type="wait",
                    output=value,
                    started_at=now(),
                    finished_at=now(),
                )
            )
            return value
        prompt = None
        if step.prompt:
            try:
                prompt = str(templates.render(step.prompt, scope.context))
            except templates.TemplateError as exc:
                raise StepFailed(key, StepFailure(f"template error: {exc}", code=exc.code)) from exc
        resume_at = now() + timedelta(seconds=step.duration_s) if step.duration_s else None
        self._record(
            StepRecord(
                key=key,
                step_id=step.id,
                step_type="wait",
                status="waiting",
                input={
                    "resume_at": resume_at.isoformat() if resume_at else None,
                    "approval": step.approval,
                    "prompt": prompt,
                },
                started_at=now(),
            )
        )
        raise Suspended(key, resume_at, prompt)

    def _map(self, step: MapStep, key: str, scope: _Scope) -> Any:
        started = now()
        try:
            items = templates.evaluate(step.items, scope.context)
        except templates.TemplateError as exc:
            raise StepFailed(
                key, StepFailure(f"'items' could not be evaluated: {exc}", code=exc.code)
            ) from exc
        if not isinstance(items, list):
            raise StepFailed(
                key,
                StepFailure(
                    f"'items' must give a list, got {type(items).__name__}", code="map_items_not_a_list"
                ),
            )
        if len(items) > MAX_MAP_ITEMS:
            raise StepFailed(
                key,
                StepFailure(
                    f"a map step runs over at most {MAX_MAP_ITEMS} items; 'items' gave {len(items)}",
                    code="map_too_many_items",
                ),
            )

        def one(index: int) -> Any:
            try:
                context = {
                    **scope.context,
                    "item": items[index],
                    "index": index,
                    "steps": dict(scope.context["steps"]),
                }
                inner = _Scope(context=context, prefix=f"{key}[{index}].")
                self._run_steps(list(step.steps), inner)
                if step.output is not None:
                    return templates.render(step.output, context)
                return inner.last_output
            finally:
                self.hooks.thread_done()

        with ThreadPoolExecutor(max_workers=min(step.concurrency, max(1, len(items)))) as pool:
            futures = [pool.submit(one, index) for index in range(len(items))]
            results = []
            first_error: BaseException | None = None
            for future in futures:
                try:
                    results.append(future.result())
                except BaseException as exc:
                    first_error = first_error or exc
                    results.append(None)
        if first_error is not None:
            if isinstance(first_error, templates.TemplateError):
                raise StepFailed(key, StepFailure(f"map output: {first_error}", code=first_error.code))
            raise first_error
        self._record(
            StepRecord(
                key=key,
                step_id=step.id,
                step_type="map",
                input={"items": len(items)},
                output=results,
                started_at=started,
                finished_at=now(),
                latency_ms=_ms(started),
            )
        )
        return results

    # --- LLM and agent steps ----------------------------------------------------------------------------

    def _with_models(self, step: LlmStep | AgentStep, key: str, scope: _Scope, attempt_fn: Any) -> Any:
        """Retries retryable failures on each model, then falls back to the next model in order."""
        policy = step.retry or SIDE_EFFECT_RETRY
        attempt = 0
        last: StepFailure | None = None
        for model in [step.model, *step.fallbacks]:
            for model_attempt in range(1, policy.max_attempts + 1):
                attempt += 1
                self._check_interrupts()
                try:
                    return attempt_fn(step, key, scope, model, attempt)
                except StepFailure as failure:
                    last = failure
                    if failure.code in {"template_error", "quota_exceeded", "invalid_structured_output"}:
                        raise StepFailed(key, failure) from failure
                    if not failure.retryable:
                        break
                    if model_attempt < policy.max_attempts:
                        self.hooks.sleep(backoff_delay(policy, model_attempt))
        assert last is not None
        raise StepFailed(key, last)

    def _governed(self, step: LlmStep | AgentStep, scope: _Scope) -> tuple[str, str | None, dict[str, Any]]:
        """The library prompt's rendered system and user text, and its model parameters."""
        ref = step.prompt
        assert isinstance(ref, PromptRef)
        resolved = self.hooks.resolve_prompt(ref, step.id)
        try:
            variables = templates.render(ref.variables, scope.context) if ref.variables else {}
        except templates.TemplateError as exc:
            raise StepFailure(f"template error in prompt variables: {exc}", code=exc.code) from exc
        missing = [v for v in resolved.input_variables if v not in variables and v not in scope.context]
        if missing:
            raise StepFailure(
                f"prompt {ref.name!r} needs variables it was not given: {', '.join(missing)}",
                code="template_error",
            )
        context = {**scope.context, **variables}
        try:
            system = templates.render(resolved.system, context) if resolved.system else None
            prompt = templates.render(resolved.template, context)
        except templates.TemplateError as exc:
            raise StepFailure(f"template error in prompt {ref.name!r}: {exc}", code=exc.code) from exc
        if step.system:
            try:
                own = templates.render(step.system, scope.context)
            except templates.TemplateError as exc:
                raise StepFailure(f"template error: {exc}", code=exc.code) from exc
            system = f"{own}\n\n{system}" if system else own
        self._prompt_parameters[step.id] = resolved.parameters
        return str(prompt), system, resolved.parameters

    def _messages(self, step: LlmStep | AgentStep, scope: _Scope) -> list[dict[str, Any]]:
        if isinstance(step.prompt, PromptRef):
            prompt, system, _ = self._governed(step, scope)
        else:
            try:
                system = templates.render(step.system, scope.context) if step.system else None
                prompt = templates.render(step.prompt, scope.context)
            except templates.TemplateError as exc:
                raise StepFailure(f"template error: {exc}", code=exc.code) from exc
        messages = []
        if isinstance(step, LlmStep) and step.json_schema is not None:
            instruction = (
                "Answer with a single JSON value that validates against this JSON Schema, and nothing "
                f"else:\n{json.dumps(step.json_schema)}"
            )
            system = f"{system}\n\n{instruction}" if system else instruction
        if system:
            messages.append({"role": "system", "content": str(system)})
        messages.append(
            {"role": "user", "content": prompt if isinstance(prompt, str) else json.dumps(prompt)}
        )
        return messages

    def _timeout(self, step: Any) -> float:
        timeout = step.timeout_s or DEFAULT_STEP_TIMEOUT_S
        if self.deadline is not None:
            timeout = min(timeout, max(0.1, (self.deadline - now()).total_seconds()))
        return timeout

    def _call(
        self,
        key: str,
        step: Any,
        request: LlmRequest,
        attempt: int,
        *,
        kind: str = "step",
        record_key: str | None = None,
        parent_key: str = "",
    ) -> LlmResult:
        started = now()
        try:
            result = self.hooks.llm(request)
        except LlmError as failure:
            self._record(
                StepRecord(
                    key=record_key or key,
                    step_id=step.id,
                    step_type=step.type,
                    kind=kind,
                    attempt=attempt,
                    status="failed",
                    input={"messages": request.messages},
                    error=_error(failure),
                    model=request.model,
                    provider=provider_of(request.model),
                    started_at=started,
                    finished_at=now(),
                    latency_ms=_ms(started),
                    parent_key=parent_key,
                )
            )
            raise
        return result

    def _llm_attempt(self, step: LlmStep, key: str, scope: _Scope, model: str, attempt: int) -> Any:
        messages = self._messages(step, scope)
        # A governed prompt's parameters apply where the step sets none of its own.
        params = self._prompt_parameters.get(step.id, {}) if isinstance(step.prompt, PromptRef) else {}

        def request_for(conversation: list[dict[str, Any]]) -> LlmRequest:
            return LlmRequest(
                model=model,
                messages=conversation,
                temperature=step.temperature if step.temperature is not None else params.get("temperature"),
                max_tokens=step.max_tokens if step.max_tokens is not None else params.get("max_tokens"),
                timeout_s=self._timeout(step),
                connector=step.connector,
                json_schema=step.json_schema,
            )

        request = request_for(messages)
        started = now()
        result = self._call(key, step, request, attempt)
        output: Any = result.text
        if step.json_schema is not None:
            problem, output = _structured(result.text, step.json_schema)
            if problem:
                # One repair: show the model its answer and what was wrong with it.
                self._record(
                    _llm_record(
                        key,
                        step,
                        attempt,
                        result,
                        messages,
                        None,
                        started,
                        status="failed",
                        error={"code": "invalid_structured_output", "message": problem},
                    )
                )
                repair = [
                    *messages,
                    {"role": "assistant", "content": result.text},
                    {
                        "role": "user",
                        "content": f"That answer is not valid: {problem}. Reply again with "
                        "only the corrected JSON.",
                    },
                ]
                request = request_for(repair)
                attempt += 1
                started = now()
                result = self._call(key, step, request, attempt)
                problem, output = _structured(result.text, step.json_schema)
                if problem:
                    failure = StepFailure(
                        f"structured output still invalid after one repair: {problem}",
                        code="invalid_structured_output",
                    )
                    self._record(
                        _llm_record(
                            key,
                            step,
                            attempt,
                            result,
                            repair,
                            None,
                            started,
                            status="failed",
                            error=_error(failure),
                        )
                    )
                    raise failure
                messages = repair
        self._record(_llm_record(key, step, attempt, result, messages, output, started))
        return output

    def _agent_attempt(self, step: AgentStep, key: str, scope: _Scope, model: str, attempt: int) -> Any:
        messages = self._messages(step, scope)
        tools = [self._tool_schema(tool) for tool in step.tools]
        by_name = {schema["function"]["name"]: tool for schema, tool in zip(tools, step.tools, strict=True)}
        declared = {schema["function"]["name"]: schema["function"]["parameters"] for schema in tools}
        started = now()
        totals = [0, 0, 0.0]
        for iteration in range(1, step.max_iterations + 1):
            self._check_interrupts()
            request = LlmRequest(
                model=model,
                messages=messages,
                temperature=step.temperature,
                max_tokens=step.max_tokens,
                tools=tools or None,
                timeout_s=self._timeout(step),
                connector=step.connector,
            )
            iteration_key = f"{key}#{attempt}.{iteration}"
            call_started = now()
            result = self._call(
                key, step, request, attempt, kind="iteration", record_key=iteration_key, parent_key=key
            )
            totals[0] += result.prompt_tokens
            totals[1] += result.completion_tokens
            totals[2] += result.cost_usd
            self._record(
                StepRecord(
                    key=iteration_key,
                    step_id=step.id,
                    step_type="agent",
                    kind="iteration",
                    attempt=attempt,
                    input={"messages": messages[-2:] if iteration > 1 else messages},
                    output={"text": result.text, "tool_calls": [c.__dict__ for c in result.tool_calls]},
                    model=result.model,
                    provider=result.provider,
                    prompt_tokens=result.prompt_tokens,
                    completion_tokens=result.completion_tokens,
                    cost_usd=result.cost_usd,
                    latency_ms=result.latency_ms,
                    started_at=call_started,
                    finished_at=now(),
                    parent_key=key,
                )
            )
            if not result.tool_calls:
                # Tokens and cost were counted on the iterations; the step row repeats them for the
                # timeline only, so it is recorded without adding them again.
                record = StepRecord(
                    key=key,
                    step_id=step.id,
                    step_type="agent",
                    attempt=attempt,
                    input={"messages": messages[:2]},
                    output=result.text,
                    model=result.model,
                    provider=result.provider,
                    started_at=started,
                    finished_at=now(),
                    latency_ms=_ms(started),
                )
                self.hooks.checkpoint(record)
                return result.text
            messages.append(
                {
                    "role": "assistant",
                    "content": result.text or None,
                    "tool_calls": [
                        {
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
                        }
                        for c in result.tool_calls
                    ],
                }
            )
            if len(result.tool_calls) > MAX_TOOL_CALLS_PER_ITERATION:
                failure = StepFailure(
                    f"the model asked for {len(result.tool_calls)} tool calls in one answer; at most "
                    f"{MAX_TOOL_CALLS_PER_ITERATION} are allowed",
                    code="too_many_tool_calls",
                )
                raise StepFailed(key, failure)
            for call in result.tool_calls:
                messages.append(
                    self._tool_call(step, key, attempt, iteration, call, by_name, declared, scope.context)
                )
        failure = StepFailure(
            f"the agent did not answer within {step.max_iterations} iterations", code="max_iterations"
        )
        raise StepFailed(key, failure)

    def _tool_schema(self, tool: Any) -> dict[str, Any]:
        if tool.type == "agent":
            name = re.sub(r"[^A-Za-z0-9_-]", "_", tool.agent)[:64]
            parameters = self.hooks.agent_input_schema(tool.agent)
            description = tool.description or f"Runs the agent {tool.agent!r} with the given input."
        elif tool.type == "mcp":
            offered = self.hooks.mcp_tool(tool.connector, tool.tool)
            name = mcp_function_name(tool)
            parameters = mcp_tool_parameters(tool, offered.get("input_schema") or {})
            description = (
                tool.description
                or offered.get("description")
                or f"Calls {tool.tool!r} on the MCP server {tool.connector!r}."
            )
        else:
            name = tool.name
            parameters = tool_parameters(tool)
            description = tool.description or f"Calls the {tool.type} connector {tool.connector!r}."
        return {
            "type": "function",
            "function": {"name": name, "description": description, "parameters": parameters},
        }

    def _tool_call(
        self,
        step: AgentStep,
        key: str,
        attempt: int,
        iteration: int,
        call: Any,
        by_name: dict[str, Any],
        declared: dict[str, dict[str, Any]],
        context: dict[str, Any],
    ) -> dict[str, Any]:
        started = now()
        tool = by_name.get(call.name)
        record = StepRecord(
            key=f"{key}#{attempt}.{iteration}.{call.name}",
            step_id=step.id,
            step_type="agent",
            kind="tool_call",
            attempt=attempt,
            input=call.arguments,
            started_at=started,
            parent_key=key,
        )
        try:
            if tool is None:
                raise StepFailure(f"unknown tool {call.name!r}", code="unknown_tool")
            if tool.type == "agent":
                if self.depth + 1 > MAX_AGENT_DEPTH:
                    raise StepFailure("agents may call agents at most 3 levels deep", code="agent_depth")
                result = self.hooks.run_agent(tool.agent, call.arguments, self.depth + 1)
            elif tool.type == "mcp":
                arguments = _mcp_arguments(tool, call.arguments, declared[call.name], context)
                operation = {"tool": tool.tool, "arguments": arguments, "timeout_s": self._timeout(step)}
                result = self.hooks.call_connector("mcp", tool.connector, operation)
            else:
                operation = {**_tool_operation(tool, call.arguments), "timeout_s": self._timeout(step)}
                result = self.hooks.call_connector(tool.type, tool.connector, operation)
            record.output = result
            content = json.dumps(result, default=str)
        except StepFailure as failure:
            record.status = "failed"
            record.error = _error(failure)
            content = json.dumps({"error": failure.message})
        record.finished_at = now()
        record.latency_ms = _ms(started)
        self._record(record)
        return {"role": "tool", "tool_call_id": call.id, "content": content}


def _tool_operation(tool: ConnectorTool, arguments: dict[str, Any]) -> dict[str, Any]:
    """The author's operation with the model's arguments where the author allowed them; arguments the
    tool does not declare, or that would replace a field the author fixed, are refused to the model."""
    try:
        jsonschema.validate(arguments, tool_parameters(tool))
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "arguments"
        raise StepFailure(
            f"tool {tool.name!r}: {where}: {exc.message} (fill only the declared parameters)",
            code="invalid_tool_arguments",
        ) from exc
    if tool.parameters is not None:
        try:
            operation = templates.render(tool.operation, {"args": arguments})
        except templates.TemplateError as exc:
            raise StepFailure(f"tool {tool.name!r}: {exc}", code=exc.code) from exc
        return dict(operation)
    return {**arguments, **tool.operation}  # the declared parameters never include a fixed field


def _mcp_arguments(
    tool: McpTool, arguments: dict[str, Any], declared: dict[str, Any], context: dict[str, Any]
) -> dict[str, Any]:
    """The model's arguments, checked against what the tool declares (never a fixed one), with the
    author's fixed arguments (rendered) on top."""
    try:
        jsonschema.validate(arguments, declared)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "arguments"
        raise StepFailure(
            f"tool {tool.tool!r}: {where}: {exc.message} (fill only the declared parameters)",
            code="invalid_tool_arguments",
        ) from exc
    try:
        fixed = templates.render(tool.arguments, context)
    except templates.TemplateError as exc:
        raise StepFailure(f"tool {tool.tool!r}: {exc}", code=exc.code) from exc
    return {**arguments, **fixed}


def _structured(text: str, schema: dict[str, Any]) -> tuple[str | None, Any]:
    try:
        value = _json_from_text(text)
    except ValueError as exc:
        return f"not JSON ({exc})", None
    try:
        jsonschema.validate(value, schema)
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(root)"
        return f"{where}: {exc.message}", value
    return None, value


def _llm_record(
    key: str,
    step: Any,
    attempt: int,
    result: LlmResult,
    messages: list[dict[str, Any]],
    output: Any,
    started: datetime,
    *,
    status: str = "succeeded",
    error: dict[str, Any] | None = None,
) -> StepRecord:
    return StepRecord(
        key=key,
        step_id=step.id,
        step_type=step.type,
        attempt=attempt,
        status=status,
        input={"messages": messages},
        output=output if status == "succeeded" else result.text,
        error=error,
        model=result.model,
        provider=result.provider,
        prompt_tokens=result.prompt_tokens,
        completion_tokens=result.completion_tokens,
        cost_usd=result.cost_usd,
        latency_ms=result.latency_ms,
        started_at=started,
        finished_at=now(),
    )


def _error(failure: StepFailure) -> dict[str, Any]:
    error: dict[str, Any] = {"code": failure.code, "message": failure.message, "retryable": failure.retryable}
    if failure.status_code is not None:
        error["status_code"] = failure.status_code
    return error


def _ms(started: datetime) -> int:
    return int((now() - started).total_seconds() * 1000)
