"""What every database kind checks before a query leaves Falcon: one statement, nothing more."""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import re
import time
import uuid
from typing import Any

_DOLLAR_TAG = re.compile(r"\$[A-Za-z_0-9]*\$")


def statement_count(sql: str, *, dialect: str = "postgres") -> int:
    """How many statements ``sql`` holds: semicolons outside quotes, identifiers and comments count
    as separators; an empty trailing statement does not count. Understands '...', "...", `...`
    (MySQL), -- and # (MySQL) line comments, /* */ block comments and $tag$...$tag$ (PostgreSQL)."""
    statements, current, i, n = 0, False, 0, len(sql)
    while i < n:
        char = sql[i]
        if char in "'\"" or (char == "`" and dialect == "mysql"):
            end = i + 1
            while end < n:
                if sql[end] == "\\" and dialect == "mysql":
                    end += 2
                    continue
                if sql[end] == char:
                    if end + 1 < n and sql[end + 1] == char:  # a doubled quote stays inside
                        end += 2
                        continue
                    break
                end += 1
            i, current = end + 1, True
            continue
        if sql.startswith("--", i) or (char == "#" and dialect == "mysql"):
            newline = sql.find("\n", i)
            i = n if newline < 0 else newline + 1
            continue
        if sql.startswith("/*", i):
            close = sql.find("*/", i + 2)
            i = n if close < 0 else close + 2
            continue
        if char == "$" and dialect == "postgres" and (tag := _DOLLAR_TAG.match(sql, i)):
            close = sql.find(tag.group(0), tag.end())
            i, current = (n if close < 0 else close + len(tag.group(0))), True
            continue
        if char == ";":
            statements += int(current)
            current = False
        elif not char.isspace():
            current = True
        i += 1
    return statements + int(current)


def json_safe(value: Any) -> Any:
    """Database values as JSON: decimals as strings (no float rounding), dates ISO 8601, bytes base64."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return value


MAX_ROWS = 10_000
MAX_STATEMENT_TIMEOUT_MS = 120_000
MAX_RESULT_BYTES = 1024 * 1024

# Whether the current PostgreSQL role can change data: table privileges, owned tables, or CREATE.
CAN_WRITE_SQL = """
SELECT (
    EXISTS (
        SELECT 1 FROM information_schema.role_table_grants
        WHERE grantee = current_user AND privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
    )
    OR EXISTS (
        SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE pg_get_userbyid(c.relowner) = current_user AND c.relkind IN ('r', 'p')
          AND n.nspname NOT IN ('pg_catalog', 'information_schema')
    )
    OR has_database_privilege(current_database(), 'CREATE')
) AS can_write
"""


def bounds_problems(config: dict[str, object]) -> dict[str, list[str]]:
    """The configured caps may not exceed the platform's."""
    problems: dict[str, list[str]] = {}
    for name, ceiling in (("max_rows", MAX_ROWS), ("statement_timeout_ms", MAX_STATEMENT_TIMEOUT_MS)):
        value = config.get(name)
        if isinstance(value, int) and not 1 <= value <= ceiling:
            problems[f"config.{name}"] = [f"Must be between 1 and {ceiling}."]
    return problems


def result_capped(
    columns: list[str], rows: list[Any], max_rows: int, affected: int, started: float
) -> dict[str, Any]:
    """Rows as JSON-safe objects, at most ``max_rows`` of them and ``MAX_RESULT_BYTES`` in all."""
    kept: list[dict[str, Any]] = []
    size = 0
    truncated = len(rows) > max_rows
    for row in rows[:max_rows]:
        item = dict(zip(columns, (json_safe(v) for v in row), strict=True))
        size += len(json.dumps(item, default=str))
        if size > MAX_RESULT_BYTES:
            truncated = True
            break
        kept.append(item)
    return {
        "columns": columns,
        "rows": kept,
        "row_count": len(kept) if columns else affected,
        "truncated": truncated,
        "latency_ms": int((time.monotonic() - started) * 1000),
    }
