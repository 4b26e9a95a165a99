"""Validation of a workflow definition: every problem, each with its JSON path. Nothing invalid is stored."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jsonschema
from pydantic import TypeAdapter, ValidationError

from agents.engine import templates
from agents.engine.graph import scope_deps
from agents.engine.spec import (
    AgentStep,
    BranchStep,
    ConnectorTool,
    DbQueryStep,
    HttpStep,
    LlmStep,
    MapStep,
    McpStep,
    PromptRef,
    SendStep,
    Step,
    TransformStep,
    WaitStep,
    WorkflowSpec,
)

STEP_TYPES = ("llm", "agent", "http", "db_query", "send", "mcp", "transform", "branch", "map", "wait")
Check = Callable[[str], str | None]


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    code: str

    def as_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message, "code": self.code}


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    parts = list(loc)
    for index, part in enumerate(parts):
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        # pydantic puts the discriminator tag in the location (steps.2.llm.model): drop it.
        if index > 0 and isinstance(parts[index - 1], int) and part in STEP_TYPES:
            continue
        if (
            index > 0
            and part in {"AgentTool", "ConnectorTool", "McpTool", "agent", "http", "db_query", "send", "mcp"}
            and isinstance(parts[index - 1], int)
        ):
            continue
        out += f".{part}" if out else str(part)
    return out or "$"


def _pydantic_problems(exc: ValidationError) -> list[Problem]:
    problems = []
    for error in exc.errors():
        kind = error["type"]
        if kind == "union_tag_invalid":
            tag = (error.get("ctx") or {}).get("tag")
            message = f"unknown step type {tag!r}; expected one of: {', '.join(STEP_TYPES)}"
            code = "unknown_step_type"
        elif kind == "union_tag_not_found":
            message = "every step needs a 'type'"
            code = "missing_step_type"
        elif kind == "extra_forbidden":
            message = "unknown field"
            code = "unknown_field"
        else:
            message = error["msg"]
            code = kind
        problems.append(Problem(_path(error["loc"]), message, code))
    return problems


@dataclass
class _Scope:
    """One list of steps (the workflow's, or a map's sub-steps) and its dependency graph."""

    steps: list[Any]
    path: str
    outer_ancestors: set[str]
    outer_ids: set[str]

    def deps(self) -> dict[str, list[str]]:
        return scope_deps(self.steps)


def _cycle(deps: dict[str, list[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in deps.get(node, []):
            if dep not in deps:
                continue
            if state.get(dep) == 1:
                return [*stack[stack.index(dep) :], dep]
            if dep not in state and (found := visit(dep)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in deps:
        if node not in state and (found := visit(node)):
            return found
    return None


def _ancestors(deps: dict[str, list[str]]) -> dict[str, set[str]]:
    memo: dict[str, set[str]] = {}

    def walk(node: str, seen: frozenset[str]) -> set[str]:
        if node in memo:
            return memo[node]
        result: set[str] = set()
        for dep in deps.get(node, []):
            if dep in deps and dep not in seen:
                result |= {dep} | walk(dep, seen | {dep})
        memo[node] = result
        return result

    return {node: walk(node, frozenset({node})) for node in deps}


def _templates_of(step: Any) -> list[tuple[str, Any, bool]]:
    """(field, template, is_expression) of every templated field of a step."""
    fields: list[tuple[str, Any, bool]] = []
    if step.when is not None:
        fields.append(("when", step.when, True))
    if isinstance(step, LlmStep | AgentStep):
        if step.system:
            fields.append(("system", step.system, False))
        if isinstance(step.prompt, str):
            fields.append(("prompt", step.prompt, False))
    elif isinstance(step, TransformStep):
        fields.append(("value", step.value, False))
    elif isinstance(step, HttpStep):
        fields += [
            ("path", step.path, False),
            ("query", step.query, False),
            ("headers", step.headers, False),
            ("json", step.json_body, False),
            ("body", step.body, False),
        ]
    elif isinstance(step, DbQueryStep):
        fields.append(("params", step.params, False))
    elif isinstance(step, SendStep):
        fields += [(name, getattr(step, name), False) for name in ("to", "subject", "body", "text")]
    elif isinstance(step, McpStep):
        fields.append(("arguments", step.arguments, False))
    elif isinstance(step, BranchStep):
        fields += [(f"cases[{i}].when", case.when, True) for i, case in enumerate(step.cases)]
    elif isinstance(step, MapStep):
        fields.append(("items", step.items, True))
    elif isinstance(step, WaitStep) and step.prompt:
        fields.append(("prompt", step.prompt, False))
    return fields


def _check_scope(
    scope: _Scope,
    problems: list[Problem],
    seen_ids: set[str],
    checks: dict[str, Check | None],
) -> None:
    ids = [step.id for step in scope.steps]
    positions = {step_id: index for index, step_id in enumerate(ids)}
    for index, step in enumerate(scope.steps):
        here = f"{scope.path}[{index}]"
        if step.id in seen_ids:
            problems.append(Problem(f"{here}.id", f"duplicate step id {step.id!r}", "duplicate_step_id"))
        seen_ids.add(step.id)
        for j, need in enumerate(step.needs or []):
            if need not in positions:
                problems.append(Problem(f"{here}.needs[{j}]", f"unknown step {need!r}", "unknown_reference"))
        if isinstance(step, BranchStep):
            targets = [
                (f"cases[{i}].steps[{j}]", t) for i, c in enumerate(step.cases) for j, t in enumerate(c.steps)
            ]
            targets += [(f"default[{j}]", t) for j, t in enumerate(step.default)]
            for where, target in targets:
                if target not in positions:
                    problems.append(
                        Problem(f"{here}.{where}", f"unknown step {target!r}", "unknown_reference")
                    )
                elif positions[target] <= index:
                    problems.append(
                        Problem(
                            f"{here}.{where}",
                            f"branch target {target!r} must come after the branch",
                            "branch_target_before_branch",
                        )
                    )

    deps = scope.deps()
    cycle = _cycle(deps)
    if cycle:
        problems.append(Problem(scope.path, "dependency cycle: " + " -> ".join(cycle), "cycle"))
        return
    ancestors = _ancestors(deps)
    visible_ids = set(ids) | scope.outer_ids

    for index, step in enumerate(scope.steps):
        here = f"{scope.path}[{index}]"
        upstream = ancestors.get(step.id, set()) | scope.outer_ancestors
        for field, template, is_expression in _templates_of(step):
            for message in templates.parse_errors(template, expression=is_expression):
                problems.append(Problem(f"{here}.{field}", message, "template_syntax"))
            for ref in sorted(templates.step_references(template, expression=is_expression)):
                if ref not in visible_ids:
                    problems.append(
                        Problem(f"{here}.{field}", f"unknown step {ref!r} in template", "unknown_reference")
                    )
                elif ref not in upstream and ref != step.id:
                    problems.append(
                        Problem(
                            f"{here}.{field}",
                            f"step {ref!r} does not run before this step; add it to 'needs'",
                            "reference_not_upstream",
                        )
                    )
        _check_externals(step, here, problems, checks)
        if isinstance(step, MapStep):
            for j, sub in enumerate(step.steps):
                if isinstance(sub, WaitStep | MapStep):
                    problems.append(
                        Problem(
                            f"{here}.steps[{j}].type",
                            f"a {sub.type} step cannot run inside a map",
                            "not_allowed_in_map",
                        )
                    )
            inner = _Scope(step.steps, f"{here}.steps", upstream, visible_ids)
            _check_scope(inner, problems, seen_ids, checks)
            if step.output is not None:
                for message in templates.parse_errors(step.output):
                    problems.append(Problem(f"{here}.output", message, "template_syntax"))


def _check_externals(step: Any, here: str, problems: list[Problem], checks: dict[str, Check | None]) -> None:
    model_check, agent_check = checks.get("model"), checks.get("agent")
    connector_check, prompt_check = checks.get("connector"), checks.get("prompt")
    if isinstance(step, LlmStep | AgentStep) and model_check:
        for where, model in [("model", step.model)] + [
            (f"fallbacks[{i}]", m) for i, m in enumerate(step.fallbacks)
        ]:
            if error := model_check(model):
                problems.append(Problem(f"{here}.{where}", error, "unknown_model"))
    if (
        isinstance(step, LlmStep | AgentStep)
        and isinstance(step.prompt, PromptRef)
        and prompt_check
        and (error := prompt_check(step.prompt.name))
    ):
        problems.append(Problem(f"{here}.prompt", error, "unknown_prompt"))
    connector = (
        step.connector
        if isinstance(step, LlmStep | AgentStep | HttpStep | DbQueryStep | SendStep | McpStep)
        else None
    )
    if connector and connector_check and (error := connector_check(connector)):
        problems.append(Problem(f"{here}.connector", error, "unknown_connector"))
    if isinstance(step, AgentStep):
        for i, tool in enumerate(step.tools):
            if tool.type == "agent" and agent_check and (error := agent_check(tool.agent)):
                problems.append(Problem(f"{here}.tools[{i}].agent", error, "unknown_agent"))
            if tool.type != "agent" and connector_check and (error := connector_check(tool.connector)):
                problems.append(Problem(f"{here}.tools[{i}].connector", error, "unknown_connector"))
            if isinstance(tool, ConnectorTool) and tool.parameters is not None:
                problems += _tool_parameter_problems(tool.parameters, f"{here}.tools[{i}].parameters")


def workflow_validate(
    definition: Any,
    *,
    model_check: Check | None = None,
    agent_check: Check | None = None,
    connector_check: Check | None = None,
    prompt_check: Check | None = None,
) -> tuple[WorkflowSpec | None, list[Problem]]:
    """The parsed spec and no problems, or None and every problem found."""
    if not isinstance(definition, dict):
        return None, [Problem("$", "a workflow definition is a JSON object", "invalid_type")]
    try:
        spec = WorkflowSpec.model_validate(definition)
    except ValidationError as exc:
        return None, _pydantic_problems(exc) + _syntax_of_valid_steps(definition)
    problems: list[Problem] = []
    try:
        jsonschema.Draft202012Validator.check_schema(spec.inputs)
    except jsonschema.SchemaError as exc:
        problems.append(Problem("inputs", f"not a valid JSON Schema: {exc.message}", "invalid_input_schema"))
    checks = {
        "model": model_check,
        "agent": agent_check,
        "connector": connector_check,
        "prompt": prompt_check,
    }
    top = _Scope(list(spec.steps), "steps", set(), set())
    _check_scope(top, problems, set(), checks)
    if spec.output is not None:
        all_ids = _all_ids(spec.steps)
        for message in templates.parse_errors(spec.output):
            problems.append(Problem("output", message, "template_syntax"))
        for ref in sorted(templates.step_references(spec.output)):
            if ref not in all_ids:
                problems.append(Problem("output", f"unknown step {ref!r} in template", "unknown_reference"))
    return (None, problems) if problems else (spec, [])


_STEP_ADAPTER: TypeAdapter[Any] = TypeAdapter(Step)


def _syntax_of_valid_steps(definition: dict[str, Any]) -> list[Problem]:
    """Template syntax of the steps that are well-formed, when others are not: report all at once."""
    problems: list[Problem] = []
    steps = definition.get("steps")
    for index, raw in enumerate(steps if isinstance(steps, list) else []):
        try:
            step = _STEP_ADAPTER.validate_python(raw)
        except ValidationError:
            continue
        for field, template, is_expression in _templates_of(step):
            for message in templates.parse_errors(template, expression=is_expression):
                problems.append(Problem(f"steps[{index}].{field}", message, "template_syntax"))
    return problems


def _all_ids(steps: Sequence[Any]) -> set[str]:
    ids: set[str] = set()
    for step in steps:
        ids.add(step.id)
        if isinstance(step, MapStep):
            ids |= _all_ids(step.steps)
    return ids


def input_problems(schema: dict[str, Any], value: Any) -> list[Problem]:
    """Run input checked against the workflow's input schema, every error with its path."""
    validator = jsonschema.Draft202012Validator(schema)
    problems = []
    for error in sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path)):
        path = "input" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
        problems.append(Problem(path, error.message, "invalid_input"))
    return problems


def _tool_parameter_problems(schema: dict[str, Any], path: str) -> list[Problem]:
    if schema.get("type", "object") != "object":
        return [Problem(path, "a tool's parameters are a JSON Schema of type object", "invalid_schema")]
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [Problem(path, f"not a valid JSON Schema: {exc.message}", "invalid_schema")]
    return []
