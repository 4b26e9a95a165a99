"""What every connector kind declares: its fields (secret or not), a test, and its operations."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from connectors.errors import ConnectorError
from connectors.netguard import PUBLIC_ONLY, NetPolicy


@dataclass(frozen=True)
class Field:
    name: str
    type: str = "string"  # string | integer | boolean | object | array
    secret: bool = False
    required: bool = False
    default: Any = None
    description: str = ""
    choices: tuple[str, ...] = ()

    def json_schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": self.type, "description": self.description}
        if self.choices:
            schema["enum"] = list(self.choices)
        if self.default is not None:
            schema["default"] = self.default
        if self.secret:
            schema["writeOnly"] = True
        return schema


@dataclass(frozen=True)
class Resolved:
    """A connector with its secrets decrypted, for the moment of one call. Never logged or returned."""

    id: str
    tenant_id: str
    name: str
    kind: str
    config: dict[str, Any]
    secrets: dict[str, str] = field(repr=False)
    policy: NetPolicy = PUBLIC_ONLY  # what this tenant's connections may reach

    def secret_values(self) -> list[str]:
        return [value for value in self.secrets.values() if value]


class Kind:
    name: ClassVar[str]
    label: ClassVar[str]
    fields: ClassVar[tuple[Field, ...]]
    step_types: ClassVar[tuple[str, ...]] = ()  # engine step/tool types this kind serves
    # A config field naming where calls go, checked against the tenant's network policy on save too.
    destination_field: ClassVar[str | None] = None

    @classmethod
    def schema(cls) -> dict[str, Any]:
        return {
            "kind": cls.name,
            "label": cls.label,
            "step_types": list(cls.step_types),
            "config": {
                "type": "object",
                "additionalProperties": False,
                "properties": {f.name: f.json_schema() for f in cls.fields if not f.secret},
                "required": [f.name for f in cls.fields if f.required and not f.secret],
            },
            "secrets": {
                "type": "object",
                "additionalProperties": False,
                "properties": {f.name: f.json_schema() for f in cls.fields if f.secret},
                "required": [f.name for f in cls.fields if f.required and f.secret],
            },
        }

    @classmethod
    def validate(cls, config: dict[str, Any], secrets: dict[str, str]) -> dict[str, list[str]]:
        """Problems keyed by ``config.<field>`` / ``secrets.<field>``; empty when valid."""
        problems: dict[str, list[str]] = {}
        known = {f.name: f for f in cls.fields}
        types = {"string": str, "integer": int, "boolean": bool, "object": dict, "array": list}
        for section, values, secret in (("config", config, False), ("secrets", secrets, True)):
            for name, value in values.items():
                spec = known.get(name)
                if spec is None or spec.secret != secret:
                    problems[f"{section}.{name}"] = ["Unknown field for this kind."]
                elif value is not None and (
                    not isinstance(value, types[spec.type])
                    or (spec.type == "integer" and isinstance(value, bool))
                ):
                    problems[f"{section}.{name}"] = [f"Must be of type {spec.type}."]
                elif spec.choices and value not in spec.choices:
                    problems[f"{section}.{name}"] = [f"Must be one of: {', '.join(spec.choices)}."]
            for spec in cls.fields:
                if spec.secret == secret and spec.required and values.get(spec.name) in (None, ""):
                    problems.setdefault(f"{section}.{spec.name}", []).append("This field is required.")
        problems.update(cls.extra_problems(config, secrets))
        return problems

    @classmethod
    def extra_problems(cls, config: dict[str, Any], secrets: dict[str, str]) -> dict[str, list[str]]:
        return {}

    @classmethod
    def test(cls, connector: Resolved) -> dict[str, Any]:
        raise NotImplementedError

    @classmethod
    def discover(cls, connector: Resolved) -> dict[str, Any] | None:
        """What the remote system offers (kept as the connector's catalogue), or None for kinds that
        have nothing to list."""
        return None

    @classmethod
    def call(cls, connector: Resolved, step_type: str, operation: dict[str, Any]) -> Any:
        raise ConnectorError(
            f"connector kind {cls.name!r} has no {step_type} operation", code="unsupported_operation"
        )
