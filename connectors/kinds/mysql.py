"""MySQL and MariaDB (PyMySQL): parameterised queries, read-only by default, statement timeout, row cap."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import pymysql

from connectors.errors import Blocked, ConnectorError
from connectors.kinds.base import Field, Kind, Resolved
from connectors.kinds.postgres import json_safe
from connectors.netguard import resolve_checked


class MySqlKind(Kind):
    name = "mysql"
    label = "MySQL / MariaDB"
    step_types = ("db_query",)
    fields: ClassVar[tuple[Field, ...]] = (
        Field("host", required=True),
        Field("port", "integer", default=3306),
        Field("database", required=True),
        Field("user", required=True),
        Field("tls", choices=("disabled", "required", "verify"), default="disabled"),
        Field("allow_writes", "boolean", default=False),
        Field("statement_timeout_ms", "integer", default=10_000),
        Field("max_rows", "integer", default=1000),
        Field("password", secret=True),
    )

    @classmethod
    def _connect(cls, connector: Resolved) -> Any:
        config = connector.config
        port = int(config.get("port") or 3306)
        try:
            address = resolve_checked(str(config["host"]), port)
        except Blocked as exc:
            raise ConnectorError(str(exc), code="destination_blocked") from exc
        tls = config.get("tls") or "disabled"
        ssl: dict[str, Any] | None = None
        if tls != "disabled":
            ssl = {"check_hostname": tls == "verify", "verify_mode": tls == "verify"}
        try:
            return pymysql.connect(
                host=str(address),
                port=port,
                user=config["user"],
                password=connector.secrets.get("password") or "",
                database=config["database"],
                connect_timeout=10,
                ssl=ssl,
                autocommit=False,
                charset="utf8mb4",
            )
        except pymysql.err.OperationalError as exc:
            raise ConnectorError(
                f"cannot connect to {config['host']}:{port}: {exc.args[-1]}",
                code="db_connection_error",
                retryable=True,
            ) from exc

    @classmethod
    def query(cls, connector: Resolved, sql: str, params: Any) -> dict[str, Any]:
        if not isinstance(params, list | dict):
            raise ConnectorError("params must be a list or an object", code="invalid_params")
        config = connector.config
        max_rows = int(config.get("max_rows") or 1000)
        timeout_s = int(config.get("statement_timeout_ms") or 10_000) / 1000
        started = time.monotonic()
        conn = cls._connect(connector)
        try:
            with conn.cursor() as cursor:
                try:  # MariaDB: any statement; MySQL: SELECTs (max_execution_time, ms)
                    cursor.execute("SET SESSION max_statement_time = %s", [timeout_s])
                except pymysql.err.MySQLError:
                    cursor.execute("SET SESSION max_execution_time = %s", [int(timeout_s * 1000)])
                mode = "READ WRITE" if config.get("allow_writes") else "READ ONLY"
                cursor.execute(f"START TRANSACTION {mode}")
                cursor.execute(sql, params)  # parameters are escaped by the driver, never formatted by us
                columns = [c[0] for c in cursor.description] if cursor.description else []
                rows = cursor.fetchmany(max_rows + 1) if columns else []
                affected = cursor.rowcount
            conn.commit()
        except pymysql.err.OperationalError as exc:
            code = exc.args[0] if exc.args else 0
            if code in (1969, 3024):  # statement / execution time exceeded
                raise ConnectorError("the query exceeded the statement timeout", code="db_timeout") from exc
            if code == 1792:
                raise ConnectorError(
                    "this connector is read-only; enable allow_writes to change data", code="db_read_only"
                ) from exc
            raise ConnectorError(f"query failed: {exc.args[-1]}", code="db_query_failed") from exc
        except pymysql.err.MySQLError as exc:
            raise ConnectorError(f"query failed: {exc.args[-1]}", code="db_query_failed") from exc
        finally:
            conn.close()
        return {
            "columns": columns,
            "rows": [dict(zip(columns, (json_safe(v) for v in row), strict=True)) for row in rows[:max_rows]],
            "row_count": min(len(rows), max_rows) if columns else affected,
            "truncated": len(rows) > max_rows,
            "latency_ms": int((time.monotonic() - started) * 1000),
        }

    @classmethod
    def test(cls, connector: Resolved) -> dict[str, Any]:
        result = cls.query(connector, "SELECT VERSION() AS version", [])
        return {"ok": True, "detail": str(result["rows"][0]["version"])}

    @classmethod
    def call(cls, connector: Resolved, step_type: str, operation: dict[str, Any]) -> Any:
        if step_type != "db_query":
            return super().call(connector, step_type, operation)
        return cls.query(connector, str(operation.get("sql", "")), operation.get("params") or [])
