"""PostgreSQL: parameterised queries only, read-only unless allowed, statement timeout, row cap."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import psycopg

from connectors.errors import Blocked, ConnectorError
from connectors.kinds.base import Field, Kind, Resolved
from connectors.kinds.sql import (
    CAN_WRITE_SQL,
    MAX_ROWS,
    MAX_STATEMENT_TIMEOUT_MS,
    bounds_problems,
    result_capped,
    statement_count,
)


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
    def extra_problems(cls, config: dict[str, Any], secrets: dict[str, str]) -> dict[str, list[str]]:
        return bounds_problems(config)

    @classmethod
    def _connect(cls, connector: Resolved) -> psycopg.Connection[Any]:
        config = connector.config
        port = int(config.get("port") or 5432)
        try:
            address = connector.policy.resolve(str(config["host"]), port)
        except Blocked as exc:
            raise ConnectorError(str(exc), code="destination_blocked") from exc
        try:
            conn = psycopg.connect(
                host=str(config["host"]),
                hostaddr=str(address),
                port=port,
                dbname=config["database"],
                user=config["user"],
                password=connector.secrets.get("password") or None,
                sslmode=config.get("sslmode") or "prefer",
                connect_timeout=10,
                autocommit=False,
            )
        except psycopg.OperationalError as exc:
            raise ConnectorError(
                f"cannot connect to {config['host']}:{port}: {str(exc).splitlines()[0]}",
                code="db_connection_error",
                retryable=True,
            ) from exc
        if conn.info.parameter_status("is_superuser") == "on":
            conn.close()
            raise ConnectorError(
                f"the role {config['user']!r} is a superuser: connectors refuse to run as one. Connect "
                "with a role that has only the rights the agent needs (a read-only role is best).",
                code="db_superuser_refused",
            )
        return conn

    @classmethod
    def query(
        cls, connector: Resolved, sql: str, params: Any, operation_timeout_s: float | None = None
    ) -> dict[str, Any]:
        if not isinstance(params, list | dict):
            raise ConnectorError("params must be a list or an object", code="invalid_params")
        if statement_count(sql, dialect="postgres") != 1:
            raise ConnectorError("a query is exactly one SQL statement", code="db_one_statement")
        config = connector.config
        max_rows = min(int(config.get("max_rows") or 1000), MAX_ROWS)
        timeout_ms = min(int(config.get("statement_timeout_ms") or 10_000), MAX_STATEMENT_TIMEOUT_MS)
        if operation_timeout_s:  # never past the step's deadline
            timeout_ms = min(timeout_ms, max(1, int(operation_timeout_s * 1000)))
        started = time.monotonic()
        with cls._connect(connector) as conn:
            try:
                with conn.cursor() as cursor:
                    # Bounds set in the query's own transaction; prepare=True sends it through the
                    # extended protocol, where a second statement cannot ride along ("COMMIT; ...").
                    cursor.execute("SELECT set_config('statement_timeout', %s, true)", [str(timeout_ms)])
                    if not config.get("allow_writes", False):
                        cursor.execute("SET TRANSACTION READ ONLY")
                    cursor.execute(sql, params, prepare=True)
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
        return result_capped(columns, rows, max_rows, affected, started)

    @classmethod
    def test(cls, connector: Resolved) -> dict[str, Any]:
        result = cls.query(connector, "SELECT version() AS version", [])
        outcome: dict[str, Any] = {"ok": True, "detail": str(result["rows"][0]["version"]).split(",")[0]}
        if not connector.config.get("allow_writes", False):
            can_write = cls.query(connector, CAN_WRITE_SQL, [])["rows"][0]["can_write"]
            if can_write:
                outcome["warnings"] = [
                    f"the role {connector.config['user']!r} can change data although allow_writes is "
                    "off: queries still run read-only, but a read-only database role is safer"
                ]
        return outcome

    @classmethod
    def call(cls, connector: Resolved, step_type: str, operation: dict[str, Any]) -> Any:
        if step_type != "db_query":
            return super().call(connector, step_type, operation)
        return cls.query(
            connector,
            str(operation.get("sql", "")),
            operation.get("params") or [],
            operation_timeout_s=operation.get("timeout_s"),
        )
