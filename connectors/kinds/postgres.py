"""PostgreSQL: parameterised queries only, read-only unless allowed, statement timeout, row cap."""

from __future__ import annotations

import base64
import datetime
import decimal
import time
import uuid
from typing import Any, ClassVar

import psycopg

from connectors.errors import Blocked, ConnectorError
from connectors.kinds.base import Field, Kind, Resolved
from connectors.netguard import resolve_checked


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


class PostgresKind(Kind):
    name = "postgres"
    label = "PostgreSQL"
    step_types = ("db_query",)
    fields: ClassVar[tuple[Field, ...]] = (
        Field("host", required=True),
        Field("port", "integer", default=5432),
        Field("database", required=True),
        Field("user", required=True),
        Field(
            "sslmode", choices=("disable", "prefer", "require", "verify-ca", "verify-full"), default="prefer"
        ),
        Field("allow_writes", "boolean", default=False, description="Off: every query runs read-only."),
        Field("statement_timeout_ms", "integer", default=10_000),
        Field("max_rows", "integer", default=1000),
        Field("password", secret=True),
    )

    @classmethod
    def _connect(cls, connector: Resolved) -> psycopg.Connection[Any]:
        config = connector.config
        port = int(config.get("port") or 5432)
        try:
            address = resolve_checked(str(config["host"]), port)
        except Blocked as exc:
            raise ConnectorError(str(exc), code="destination_blocked") from exc
        try:
            return psycopg.connect(
                host=str(config["host"]),
                hostaddr=str(address),
                port=port,
                dbname=config["database"],
                user=config["user"],
                password=connector.secrets.get("password") or None,
                sslmode=config.get("sslmode") or "prefer",
                connect_timeout=10,
                autocommit=False,
                options=f"-c statement_timeout={int(config.get('statement_timeout_ms') or 10_000)}",
            )
        except psycopg.OperationalError as exc:
            raise ConnectorError(
                f"cannot connect to {config['host']}:{port}: {str(exc).splitlines()[0]}",
                code="db_connection_error",
                retryable=True,
            ) from exc

    @classmethod
    def query(cls, connector: Resolved, sql: str, params: Any) -> dict[str, Any]:
        if not isinstance(params, list | dict):
            raise ConnectorError("params must be a list or an object", code="invalid_params")
        max_rows = int(connector.config.get("max_rows") or 1000)
        started = time.monotonic()
        with cls._connect(connector) as conn:
            conn.read_only = not connector.config.get("allow_writes", False)
            try:
                with conn.cursor() as cursor:
                    cursor.execute(sql, params)  # parameters are sent separately: never formatted into SQL
                    columns = [c.name for c in cursor.description] if cursor.description else []
                    rows = cursor.fetchmany(max_rows + 1) if cursor.description else []
                    affected = cursor.rowcount
                conn.commit()
            except psycopg.errors.QueryCanceled as exc:
                raise ConnectorError("the query exceeded the statement timeout", code="db_timeout") from exc
            except psycopg.errors.ReadOnlySqlTransaction as exc:
                raise ConnectorError(
                    "this connector is read-only; enable allow_writes to change data", code="db_read_only"
                ) from exc
            except psycopg.Error as exc:
                raise ConnectorError(
                    f"query failed: {str(exc).splitlines()[0]}", code="db_query_failed"
                ) from exc
        truncated = len(rows) > max_rows
        return {
            "columns": columns,
            "rows": [dict(zip(columns, (json_safe(v) for v in row), strict=True)) for row in rows[:max_rows]],
            "row_count": min(len(rows), max_rows) if columns else affected,
            "truncated": truncated,
            "latency_ms": int((time.monotonic() - started) * 1000),
        }

    @classmethod
    def test(cls, connector: Resolved) -> dict[str, Any]:
        result = cls.query(connector, "SELECT version() AS version", [])
        return {"ok": True, "detail": str(result["rows"][0]["version"]).split(",")[0]}

    @classmethod
    def call(cls, connector: Resolved, step_type: str, operation: dict[str, Any]) -> Any:
        if step_type != "db_query":
            return super().call(connector, step_type, operation)
        return cls.query(connector, str(operation.get("sql", "")), operation.get("params") or [])
