"""The builder's form: a workflow definition as form fields and back, generated from the workflow schema.

Every step type's fields come from its pydantic model's JSON Schema (``agents.engine.spec``): a string
is a text box, a number a number box, a Literal a select, a boolean a checkbox, anything else a JSON
box; a few names get pickers (model, connector, library prompt). Steps are numbered by position:
``s2-model`` is ``steps[2].model`` and ``s1.0-prompt`` is ``steps[1].steps[0].prompt`` (a map's
sub-step), so a validation problem's JSON path maps back to the field it belongs to. The builder
keeps no state between requests: every button posts the whole form, the server rebuilds the
definition, applies the action and renders again, so the JSON tab and the form never disagree.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any, get_args

from agents.engine.spec import Step
from falcon import jsonlimits

COMMON = ("id", "type", "needs", "when", "retry", "timeout_s")
STRUCTURAL = {"branch": ("cases", "default"), "map": ("steps",)}
LONG_TEXT = {"system", "prompt", "sql", "body", "text", "jmespath"}
INPUT_TYPES = ("string", "number", "integer", "boolean", "object", "array")
RETRY_FIELDS = ("max_attempts", "backoff_s", "max_backoff_s")
# Shown on every step card; a type's other optional fields fold under "More options".
PRIMARY = {"model", "system", "prompt", "connector", "method", "path", "sql", "to", "subject", "body", "text",
           "value", "items", "approval", "duration_s", "tools", "agent"}  # fmt: skip


@cache
def step_models() -> dict[str, Any]:
    """Step type -> its pydantic model, read from the discriminated union."""
    union = get_args(Step)[0]
    return {model.model_fields["type"].annotation.__args__[0]: model for model in get_args(union)}


def step_types() -> list[str]:
    return list(step_models())


@dataclass(frozen=True)
class FieldSpec:
    name: str
    widget: str  # text | textarea | number | integer | checkbox | select | json | value | list | model
    #               | connector | prompt
    required: bool = False
    help: str = ""
    choices: tuple[str, ...] = ()
    default: Any = None


def _unwrap(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """A ``X | None`` schema as X, and whether null was allowed."""
    options = schema.get("anyOf")
    if options:
        rest = [o for o in options if o.get("type") != "null"]
        if len(rest) == 1:
            return {**rest[0], **{k: v for k, v in schema.items() if k != "anyOf"}}, True
    return schema, False


def _widget(name: str, schema: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    if name == "model":
        return "model", ()
    if name == "fallbacks":
        return "list", ()
    if name == "connector":
        return "connector", ()
    if name == "prompt" and "anyOf" in schema and any("$ref" in o for o in schema["anyOf"]):
        return "prompt", ()
    inner, _ = _unwrap(schema)
    if "enum" in inner:
        return "select", tuple(str(v) for v in inner["enum"])
    kind = inner.get("type")
    if kind == "string":
        return ("textarea" if name in LONG_TEXT else "text"), ()
    if kind in ("number", "integer"):
        return str(kind), ()
    if kind == "boolean":
        return "checkbox", ()
    if not kind and "$ref" not in inner and "anyOf" not in inner:
        return "value", ()  # Any: a template string, or JSON
    if "anyOf" in inner:  # str | list[str] and the like
        return "value", ()
    return "json", ()


@cache
def step_fields(step_type: str) -> tuple[FieldSpec, ...]:
    model = step_models()[step_type]
    schema = model.model_json_schema(by_alias=True)
    required = set(schema.get("required", []))
    specs = []
    for name, prop in schema["properties"].items():
        if name in COMMON or name in STRUCTURAL.get(step_type, ()):
            continue
        widget, choices = _widget(name, prop)
        specs.append(
            FieldSpec(
                name,
                widget,
                name in required,
                str(prop.get("description", "")),
                choices,
                prop.get("default"),
            )
        )
    return tuple(specs)


# --- form data -> definition ---------------------------------------------------------------------------


class Form:
    """The posted fields, and the problems met while reading them (keyed by field name)."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.errors: dict[str, list[str]] = {}

    def get(self, name: str) -> str:
        return str(self.data.get(name, "")).strip("\r")

    def has(self, name: str) -> bool:
        return name in self.data

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)


def _number(form: Form, name: str, integer: bool) -> Any:
    raw = form.get(name).strip()
    if raw == "":
        return None
    try:
        return int(raw) if integer else float(raw) if "." in raw or "e" in raw.lower() else int(raw)
    except ValueError:
        form.fail(name, f"Not {'a whole number' if integer else 'a number'}.")
        return None


def _json(form: Form, name: str, *, text_ok: bool) -> Any:
    raw = form.get(name)
    if raw.strip() == "":
        return None
    stripped = raw.strip()
    try:
        return jsonlimits.loads(raw)
    except ValueError as exc:
        # A "value" box takes a template string too; text that opens like a JSON object must be JSON.
        if text_ok and not (stripped.startswith("{") and not stripped.startswith(("{{", "{%", "{#"))):
            return raw
        form.fail(name, f"Not valid JSON: {exc}"[:200])
        return None


def _list(form: Form, name: str) -> list[str] | None:
    raw = form.get(name).strip()
    if raw == "":
        return None
    return [part.strip() for part in raw.split(",") if part.strip()]


def _read_field(form: Form, prefix: str, spec: FieldSpec, step: dict[str, Any]) -> None:
    name = prefix + spec.name
    if spec.widget == "prompt":
        library = form.get(name + ".name").strip()
        if library:
            ref: dict[str, Any] = {"name": library}
            if label := form.get(name + ".label").strip():
                ref["label"] = label
            variables = _json(form, name + ".variables", text_ok=False)
            if variables:
                ref["variables"] = variables
            step[spec.name] = ref
        elif form.get(name) != "":
            step[spec.name] = form.get(name)
        return
    value: Any
    if spec.widget == "checkbox":
        value = True if form.get(name) == "on" else None
    elif spec.widget in ("number", "integer"):
        value = _number(form, name, spec.widget == "integer")
    elif spec.widget == "json":
        value = _json(form, name, text_ok=False)
    elif spec.widget == "value":
        value = _json(form, name, text_ok=True)
    elif spec.widget == "list":
        value = _list(form, name)
    else:
        value = form.get(name) if form.get(name) != "" else None
    if value is not None:
        step[spec.name] = value


def read_step(form: Form, prefix: str) -> dict[str, Any]:
    step_type = form.get(prefix + "type")
    step: dict[str, Any] = {"id": form.get(prefix + "id").strip(), "type": step_type}
    needs = _list(form, prefix + "needs")
    if needs is not None:
        step["needs"] = needs
    elif form.get(prefix + "needs").strip() == "" and form.get(prefix + "needs_none") == "on":
        step["needs"] = []
    if when := form.get(prefix + "when").strip():
        step["when"] = when
    timeout = _number(form, prefix + "timeout_s", False)
    if timeout is not None:
        step["timeout_s"] = timeout
    retry = {}
    for name in RETRY_FIELDS:
        value = _number(form, f"{prefix}retry.{name}", name == "max_attempts")
        if value is not None:
            retry[name] = value
    if retry:
        step["retry"] = retry
    if step_type not in step_models():
        form.fail(prefix + "type", f"Unknown step type {step_type!r}.")
        return step
    for spec in step_fields(step_type):
        _read_field(form, prefix, spec, step)
    if step_type == "branch":
        cases = []
        k = 0
        while form.has(f"{prefix}cases.{k}.when"):
            cases.append(
                {
                    "when": form.get(f"{prefix}cases.{k}.when").strip(),
                    "steps": _list(form, f"{prefix}cases.{k}.steps") or [],
                }
            )
            k += 1
        step["cases"] = cases
        step["default"] = _list(form, prefix + "default") or []
    if step_type == "map":
        step["steps"] = read_steps(form, prefix.rstrip("-") + ".")
    return step


def read_steps(form: Form, list_prefix: str) -> list[dict[str, Any]]:
    """The steps whose fields start with ``s<i>-`` (top level) or ``s<i>.<j>-`` (a map's)."""
    steps = []
    index = 0
    while form.has(f"{list_prefix_name(list_prefix)}{index}-type"):
        steps.append(read_step(form, f"{list_prefix_name(list_prefix)}{index}-"))
        index += 1
    return steps


def list_prefix_name(list_prefix: str) -> str:
    return list_prefix if list_prefix else "s"


def read_inputs(form: Form) -> dict[str, Any]:
    extra = _json(form, "inputs.extra", text_ok=False) or {}
    schema: dict[str, Any] = {**extra, "type": "object", "properties": {}}
    required = []
    k = 0
    while form.has(f"in{k}-name"):
        name = form.get(f"in{k}-name").strip()
        kind = form.get(f"in{k}-type")
        if not name:
            k += 1
            continue
        if kind not in INPUT_TYPES:
            form.fail(f"in{k}-type", "Pick a type.")
        prop = _json(form, f"in{k}-extra", text_ok=False) or {}
        prop["type"] = kind
        if description := form.get(f"in{k}-description").strip():
            prop["description"] = description
        else:
            prop.pop("description", None)
        if name in schema["properties"]:
            form.fail(f"in{k}-name", f"Two fields are named {name!r}.")
        schema["properties"][name] = prop
        if form.get(f"in{k}-required") == "on":
            required.append(name)
        k += 1
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)
    return schema


def read_definition(form: Form) -> dict[str, Any]:
    definition: dict[str, Any] = {"inputs": read_inputs(form), "steps": read_steps(form, "")}
    output = _json(form, "output", text_ok=True)
    if output is not None:
        definition["output"] = output
    timeout = _number(form, "timeout_s", False)
    if timeout is not None:
        definition["timeout_s"] = timeout
    return definition


# --- definition -> what the template renders ------------------------------------------------------------


@dataclass
class BoundField:
    spec: FieldSpec
    name: str
    value: str
    errors: list[str]
    checked: bool = False
    extra: dict[str, str] = field(default_factory=dict)  # a prompt's library name, label, variables


@dataclass
class StepView:
    prefix: str  # "s2-" or "s1.0-"
    path: str  # "steps[2]" or "steps[1].steps[0]"
    index: int
    last: bool
    id: str
    type: str
    fields: list[BoundField]
    common: dict[str, BoundField]
    errors: list[str]  # problems of the step as a whole
    cases: list[dict[str, BoundField]] = field(default_factory=list)
    default: BoundField | None = None
    substeps: list[StepView] = field(default_factory=list)
    sub_prefix: str = ""
    no_needs: bool = False  # needs: [] — runs first, after nothing

    @property
    def primary(self) -> list[BoundField]:
        return [f for f in self.fields if f.spec.required or f.spec.name in PRIMARY]

    @property
    def more(self) -> list[BoundField]:
        return [f for f in self.fields if not (f.spec.required or f.spec.name in PRIMARY)]

    @property
    def more_open(self) -> bool:
        return any(f.errors or f.value or f.checked or f.extra for f in self.more)

    @property
    def advanced_open(self) -> bool:
        return any(self.common[n].errors for n in ("timeout_s", *(f"retry.{r}" for r in RETRY_FIELDS)))


def _text(value: Any, widget: str) -> str:
    if value is None:
        return ""
    if widget == "list":
        return ", ".join(str(v) for v in value) if isinstance(value, list) else str(value)
    if widget == "value" and isinstance(value, str) and not _reads_as_json(value):
        return value
    if widget in ("json", "value"):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return str(value)


def _reads_as_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return text.strip().startswith("{") and not text.strip().startswith(("{{", "{%", "{#"))
    return True


def bound(spec: FieldSpec, name: str, value: Any, errors: dict[str, list[str]]) -> BoundField:
    if spec.widget == "prompt" and isinstance(value, dict):
        extra = {
            "name": str(value.get("name", "")),
            "label": str(value.get("label") or ""),
            "variables": json.dumps(value["variables"]) if value.get("variables") else "",
        }
        return BoundField(spec, name, "", errors.get(name, []), extra=extra)
    return BoundField(spec, name, _text(value, spec.widget), errors.get(name, []), checked=value is True)


def step_views(
    steps: list[dict[str, Any]], errors: dict[str, list[str]], list_prefix: str = "", path: str = ""
) -> list[StepView]:
    views = []
    for index, step in enumerate(steps):
        prefix = f"{list_prefix_name(list_prefix)}{index}-"
        here = f"{path}steps[{index}]"
        step_type = str(step.get("type", ""))
        specs = step_fields(step_type) if step_type in step_models() else ()
        retry = step.get("retry") or {}
        common = {
            "needs": bound(FieldSpec("needs", "list"), prefix + "needs", step.get("needs"), errors),
            "when": bound(FieldSpec("when", "text"), prefix + "when", step.get("when"), errors),
            "timeout_s": bound(
                FieldSpec("timeout_s", "number"), prefix + "timeout_s", step.get("timeout_s"), errors
            ),
        }
        for name in RETRY_FIELDS:
            common[f"retry.{name}"] = bound(
                FieldSpec(name, "number"), f"{prefix}retry.{name}", retry.get(name), errors
            )
        view = StepView(
            prefix=prefix,
            path=here,
            index=index,
            last=index == len(steps) - 1,
            id=str(step.get("id", "")),
            type=step_type,
            fields=[bound(spec, prefix + spec.name, step.get(spec.name), errors) for spec in specs],
            common=common,
            errors=errors.get(prefix, []) + errors.get(prefix + "type", []) + errors.get(prefix + "id", []),
            no_needs=step.get("needs") == [],
        )
        if step_type == "branch":
            for k, case in enumerate(step.get("cases") or []):
                view.cases.append(
                    {
                        "when": bound(
                            FieldSpec("when", "text"), f"{prefix}cases.{k}.when", case.get("when"), errors
                        ),
                        "steps": bound(
                            FieldSpec("steps", "list"), f"{prefix}cases.{k}.steps", case.get("steps"), errors
                        ),
                    }
                )
            view.default = bound(
                FieldSpec("default", "list"), prefix + "default", step.get("default"), errors
            )
        if step_type == "map":
            view.sub_prefix = prefix.rstrip("-") + "."
            view.substeps = step_views(step.get("steps") or [], errors, view.sub_prefix, here + ".")
        views.append(view)
    return views


@dataclass
class InputRow:
    index: int
    name: str
    type: str
    required: bool
    description: str
    extra: str
    errors: list[str]


def input_rows(inputs: dict[str, Any], errors: dict[str, list[str]]) -> list[InputRow]:
    required = set(inputs.get("required") or [])
    rows = []
    for k, (name, prop) in enumerate((inputs.get("properties") or {}).items()):
        prop = prop if isinstance(prop, dict) else {}
        extra = {key: v for key, v in prop.items() if key not in ("type", "description")}
        kind = prop.get("type", "string")
        rows.append(
            InputRow(
                k,
                name,
                kind if isinstance(kind, str) else "string",
                name in required,
                str(prop.get("description", "")),
                json.dumps(extra) if extra else "",
                errors.get(f"in{k}-name", []) + errors.get(f"in{k}-type", []),
            )
        )
    return rows


def inputs_extra(inputs: dict[str, Any]) -> str:
    extra = {k: v for k, v in inputs.items() if k not in ("type", "properties", "required")}
    return json.dumps(extra) if extra else ""


# --- problems (JSON paths) -> form fields --------------------------------------------------------------

_STEP = re.compile(r"steps\[(\d+)\]")


def field_for_path(path: str, definition: dict[str, Any]) -> str:
    """The form field a validation problem's JSON path belongs to (or the step's card, or "")."""
    rest = path
    indexes: list[str] = []
    steps = definition.get("steps") if isinstance(definition, dict) else None
    step: Any = None
    while (match := _STEP.match(rest)) is not None:
        indexes.append(match.group(1))
        rest = rest[match.end() :].lstrip(".")
        index = int(match.group(1))
        step = steps[index] if isinstance(steps, list) and index < len(steps) else None
        steps = step.get("steps") if isinstance(step, dict) else None
    if not indexes:
        top = rest.split(".")[0].split("[")[0]
        if top == "inputs":
            return "inputs"
        return top if top in ("output", "timeout_s") else ""
    prefix = "s" + ".".join(indexes) + "-"
    if not rest:
        return prefix
    dotted = re.sub(r"\[(\d+)\]", r".\1", rest)
    parts = dotted.split(".")
    step_type = step.get("type") if isinstance(step, dict) else None
    known = {"id", "type", "needs", "when", "timeout_s"} | {f"retry.{n}" for n in RETRY_FIELDS}
    if step_type in step_models():
        known |= {spec.name for spec in step_fields(step_type)}
    if step_type == "branch":
        known |= {"default"} | {f"cases.{k}.{f}" for k in range(100) for f in ("when", "steps")}
    for end in range(len(parts), 0, -1):
        candidate = ".".join(parts[:end])
        if candidate in known:
            return prefix + candidate
    return prefix


def problems_by_field(problems: list[Any], definition: dict[str, Any]) -> dict[str, list[str]]:
    result: dict[str, list[str]] = {}
    for problem in problems:
        name = field_for_path(problem.path, definition)
        result.setdefault(name, []).append(
            f"{problem.message} ({problem.path})" if not name else problem.message
        )
    return result


# --- structural edits ------------------------------------------------------------------------------------


def _locate(definition: dict[str, Any], prefix: str) -> tuple[list[dict[str, Any]], int]:
    """The list holding the step ``prefix`` names (``s1.0-``) and its index in it."""
    indexes = [int(i) for i in prefix.rstrip("-")[1:].split(".")]
    steps = definition["steps"]
    for i in indexes[:-1]:
        steps = steps[i]["steps"]
    return steps, indexes[-1]


def _list_for(definition: dict[str, Any], list_prefix: str) -> list[dict[str, Any]]:
    if not list_prefix:
        return definition["steps"]
    steps, index = _locate(definition, list_prefix.rstrip(".") + "-")
    return steps[index].setdefault("steps", [])


def _all_ids(steps: list[dict[str, Any]]) -> set[str]:
    ids = set()
    for step in steps:
        ids.add(str(step.get("id")))
        ids |= _all_ids(step.get("steps") or []) if step.get("type") == "map" else set()
    return ids


def new_step(step_type: str, taken: set[str], model: str) -> dict[str, Any]:
    number = 1
    while f"{step_type}_{number}" in taken:
        number += 1
    step: dict[str, Any] = {"id": f"{step_type}_{number}", "type": step_type}
    starters: dict[str, dict[str, Any]] = {
        "llm": {"model": model, "prompt": "{{ input | tojson }}"},
        "agent": {"model": model, "prompt": "{{ input | tojson }}"},
        "transform": {"value": "{{ input }}"},
        "http": {"connector": "", "method": "GET", "path": "/"},
        "db_query": {"connector": "", "sql": "SELECT 1"},
        "send": {"connector": "", "text": ""},
        "mcp": {"connector": "", "tool": "", "arguments": {}},
        "branch": {"cases": [{"when": "true", "steps": []}], "default": []},
        "map": {
            "items": "input.items",
            "steps": [{"id": f"item_{number}", "type": "transform", "value": "{{ item }}"}],
        },
        "wait": {"approval": True, "prompt": "Approve?"},
    }
    step.update(starters.get(step_type, {}))
    return step


def apply_action(definition: dict[str, Any], action: str, form: Form, model: str) -> None:
    """Applies one structural button (add, remove, move, add a case or an input field) in place."""
    verb, _, target = action.partition(":")
    if verb == "add":
        step_type = form.get(f"add_type:{target}")
        if step_type in step_models():
            _list_for(definition, target).append(new_step(step_type, _all_ids(definition["steps"]), model))
    elif verb in ("remove", "up", "down"):
        steps, index = _locate(definition, target)
        if verb == "remove":
            steps.pop(index)
        elif verb == "up" and index > 0:
            steps[index - 1], steps[index] = steps[index], steps[index - 1]
        elif verb == "down" and index < len(steps) - 1:
            steps[index + 1], steps[index] = steps[index], steps[index + 1]
    elif verb == "add-case":
        steps, index = _locate(definition, target)
        steps[index].setdefault("cases", []).append({"when": "", "steps": []})
    elif verb == "remove-case":
        prefix, _, k = target.rpartition(":")
        steps, index = _locate(definition, prefix)
        cases = steps[index].get("cases") or []
        if k.isdigit() and int(k) < len(cases):
            cases.pop(int(k))
    elif verb == "add-input":
        properties = definition["inputs"].setdefault("properties", {})
        number = len(properties) + 1
        while f"field_{number}" in properties:
            number += 1
        properties[f"field_{number}"] = {"type": "string"}
    elif verb == "remove-input":
        properties = definition["inputs"].get("properties") or {}
        names = list(properties)
        if target.isdigit() and int(target) < len(names):
            name = names[int(target)]
            properties.pop(name)
            required = [r for r in definition["inputs"].get("required", []) if r != name]
            if required:
                definition["inputs"]["required"] = required
            else:
                definition["inputs"].pop("required", None)


STRUCTURAL_VERBS = ("add", "remove", "up", "down", "add-case", "remove-case", "add-input", "remove-input")
