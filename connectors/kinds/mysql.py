"""MySQL and MariaDB (PyMySQL): parameterised queries, read-only by default, statement timeout, row cap."""

from __future__ import annotations

import re
import time
from typing import Any, ClassVar

import pymysql

from connectors.errors import Blocked, ConnectorError
from connectors.kinds.base import Field, Kind, Resolved
from connectors.kinds.sql import (
    MAX_ROWS,
    MAX_STATEMENT_TIMEOUT_MS,
    bounds_problems,
    result_capped,
    statement_count,
)

_ADMIN_GRANT = re.compile(r"GRANT (ALL PRIVILEGES|.*\bSUPER\b).* ON \*\.\*", re.IGNORECASE)
_WRITE_GRANT = re.compile(
    r"GRANT .*\b(ALL PRIVILEGES|INSERT|UPDATE|DELETE|CREATE|DROP|ALTER)\b.* ON ", re.IGNORECASE
)


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
            address = connector.policy.resolve(str(config["host"]), port)
        except Blocked as exc:
            raise ConnectorError(str(exc), code="destination_blocked") from exc
        tls = config.get("tls") or "disabled"
        ssl: dict[str, Any] | None = None
        if tls != "disabled":
            ssl = {"check_hostname": tls == "verify", "verify_mode": tls == "verify"}
        try:
            conn = pymysql.connect(
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
        grants = cls._grants(conn)
        if any(_ADMIN_GRANT.search(grant) for grant in grants):
            conn.close()
            raise ConnectorError(
                f"the user {config['user']!r} holds administrative rights (ALL or SUPER on *.*): "
                "connectors refuse to run as one. Connect with a user that has only the rights the agent "
                "needs (SELECT only is best).",
                code="db_superuser_refused",
            )
        return conn

    @staticmethod
    def _grants(conn: Any) -> list[str]:
        with conn.cursor() as cursor:
            cursor.execute("SHOW GRANTS FOR CURRENT_USER()")
            return [str(row[0]) for row in cursor.fetchall()]

    @classmethod
    def extra_problems(cls, config: dict[str, Any], secrets: dict[str, str]) -> dict[str, list[str]]:
        return bounds_problems(config)

    @classmethod
    def query(
        cls, connector: Resolved, sql: str, params: Any, operation_timeout_s: float | None = None
    ) -> dict[str, Any]:
        if not isinstance(params, list | dict):
            raise ConnectorError("params must be a list or an object", code="invalid_params")
        if statement_count(sql, dialect="mysql") != 1:
            raise ConnectorError("a query is exactly one SQL statement", code="db_one_statement")
        config = connector.config
        max_rows = min(int(config.get("max_rows") or 1000), MAX_ROWS)
        timeout_s = min(int(config.get("statement_timeout_ms") or 10_000), MAX_STATEMENT_TIMEOUT_MS) / 1000
        if operation_timeout_s:  # never past the step's deadline
            timeout_s = min(timeout_s, max(0.001, float(operation_timeout_s)))
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
        return result_capped(columns, list(rows), max_rows, affected, started)

    @classmethod
    def test(cls, connector: Resolved) -> dict[str, Any]:
        result = cls.query(connector, "SELECT VERSION() AS version", [])
        outcome: dict[str, Any] = {"ok": True, "detail": str(result["rows"][0]["version"])}
        if not connector.config.get("allow_writes", False):
            conn = cls._connect(connector)
            try:
                grants = cls._grants(conn)
            finally:
                conn.close()
            if any(_WRITE_GRANT.search(grant) for grant in grants):
                outcome["warnings"] = [
                    f"the user {connector.config['user']!r} can change data although allow_writes is off: "
                    "queries still run read-only, but a SELECT-only user is safer"
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
