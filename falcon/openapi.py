"""The API schema documents every error a caller can meet, in the one error shape.

A drf-spectacular postprocessing hook adds the ``Error`` component and, to every operation, the 4xx
answers the API gives (and the 503 of billing without Stripe), so clients and the schema-driven tests
(Schemathesis in ``make test``) know them.
"""

from __future__ import annotations

from typing import Any

ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string", "description": "Stable, machine-readable."},
                "message": {"type": "string", "description": "For people."},
                "fields": {"type": "object", "description": "Problems by field (JSON path)."},
            },
            "additionalProperties": True,  # e.g. a quota's metric, limit and used
        }
    },
}
ERRORS = {
    "400": "Invalid input (the fields say where) or a malformed body.",
    "401": "No credentials, or credentials that are not valid.",
    "402": "The plan does not allow it (a count limit, a feature, a schedule interval).",
    "403": "The role, the key's scopes or the object's rights do not allow it.",
    "404": "No such object in this tenant (another tenant's objects look the same).",
    "405": "The method is not allowed here.",
    "409": "The object's state does not allow it (e.g. already finished, name taken).",
    "413": "The body is larger than the limit.",
    "415": "The body is not JSON.",
    "429": "A quota or rate limit is used up (Retry-After says when to retry).",
}
BILLING_UNCONFIGURED = {"503": "Billing is not configured on this installation (no Stripe key)."}


def _response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


def error_responses(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            errors = {**ERRORS, **(BILLING_UNCONFIGURED if path.startswith("/api/v1/billing/") else {})}
            for status, description in errors.items():
                responses.setdefault(status, _response(description))
    return result
