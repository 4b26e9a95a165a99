"""Request body parsers (loaded by DRF's settings, so they must not import rest_framework.views)."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.parsers import JSONParser

from falcon import jsonlimits


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser with a bound on nesting (``falcon.jsonlimits``): a 400, never a 500."""

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        encoding = (parser_context or {}).get("encoding", "utf-8")
        try:
            return jsonlimits.loads(stream.read().decode(encoding))
        except ValueError as exc:
            raise exceptions.ParseError(f"JSON parse error - {exc}") from exc
