"""MCP servers: a team's Model Context Protocol server (Streamable HTTP) as a connector.

Its tools are listed on save and by the Test button (kept as the connector's catalogue) and can be
called by an ``mcp`` step or offered to an agent step's model as tools. The client is the official
SDK's (``mcp.Client`` over ``streamable_http_client``); every request it makes, redirects included,
goes through the tenant's network policy: the host is resolved and checked, and the connection goes
to the checked address with the name kept for the Host header and TLS.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, TypeVar

import anyio
import httpx2

from connectors.errors import Blocked, ConnectorError
from connectors.kinds.base import Field, Kind, Resolved
from connectors.netguard import NetPolicy

DEFAULT_TIMEOUT_S = 30
MAX_TIMEOUT_S = 300
MAX_TOOLS = 200
MAX_RESULT_BYTES = 5 * 1024 * 1024
T = TypeVar("T")


class _GuardedTransport(httpx2.AsyncBaseTransport):
    """Each request is sent to the address the tenant's policy checked (no DNS rebinding between the
    check and the connection); the Host header and TLS server name keep the URL's name."""

    def __init__(self, policy: NetPolicy) -> None:
        self.policy = policy
        self.inner = httpx2.AsyncHTTPTransport(trust_env=False)
        self.refused_status: int | None = None  # the SDK reports an HTTP refusal without its status

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        url = request.url
        if url.scheme not in ("http", "https") or not url.host:
            raise httpx2.UnsupportedProtocol(f"only http(s) URLs are allowed, not {url.scheme!r}")
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            address = await anyio.to_thread.run_sync(self.policy.resolve, url.host, port)
        except Blocked as exc:
            raise _Refused(str(exc)) from exc
        request.headers["Host"] = url.netloc.decode()
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": url.host}
        request.url = url.copy_with(host=str(address))
        response = await self.inner.handle_async_request(request)
        if response.status_code >= 400 and response.status_code != 405:  # 405: no GET stream, fine
            self.refused_status = response.status_code
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Refused(httpx2.TransportError):
    """The network policy refused the destination."""


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def _tool_view(tool: Any) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description or "",
        "input_schema": tool.input_schema or {"type": "object"},
    }


def _result_value(result: Any) -> tuple[Any, str]:
    """(the value a step outputs, the text of the result): structured content when the tool gives it,
    else its text (parsed when it is JSON)."""
    texts = [block.text for block in result.content if getattr(block, "type", None) == "text"]
    others = [block.type for block in result.content if getattr(block, "type", None) != "text"]
    text = "\n".join(texts)
    if others:
        text = (text + "\n" if text else "") + f"[{', '.join(others)} content left out]"
    if result.structured_content is not None:
        return result.structured_content, text
    try:
        return json.loads(text), text
    except ValueError:
        return text, text


class McpKind(Kind):
    name = "mcp"
    label = "MCP server"
    step_types = ("mcp",)
    destination_field = "url"
    fields: ClassVar[tuple[Field, ...]] = (
        Field(
            "url",
            required=True,
            description="The server's Streamable HTTP endpoint, e.g. https://mcp.example.com/mcp",
        ),
        Field("auth_header", default="Authorization", description="Header carrying the secret, if any."),
        Field("timeout_s", "integer", default=DEFAULT_TIMEOUT_S, description="Per call, in seconds."),
        Field("auth_value", secret=True, description="The header's value, e.g. 'Bearer …'."),
    )

    @classmethod
    def extra_problems(cls, config: dict[str, Any], secrets: dict[str, str]) -> dict[str, list[str]]:
        problems: dict[str, list[str]] = {}
        url = str(config.get("url", ""))
        if url and not url.startswith(("http://", "https://")):
            problems["config.url"] = ["Must start with http:// or https://."]
        header = config.get("auth_header")
        if isinstance(header, str) and header and not header.replace("-", "").isalnum():
            problems["config.auth_header"] = ["Must be an HTTP header name."]
        timeout = config.get("timeout_s")
        if isinstance(timeout, int) and not 1 <= timeout <= MAX_TIMEOUT_S:
            problems["config.timeout_s"] = [f"Must be between 1 and {MAX_TIMEOUT_S}."]
        return problems

    @classmethod
    def _session(cls, connector: Resolved, timeout_s: float, work: Callable[[Any], Awaitable[T]]) -> T:
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared.exceptions import MCPError

        headers = {}
        secret = connector.secrets.get("auth_value")
        if secret:
            headers[str(connector.config.get("auth_header") or "Authorization")] = secret

        policy_transport = _GuardedTransport(connector.policy)

        async def scenario() -> T:
            http = httpx2.AsyncClient(headers=headers, timeout=timeout_s, transport=policy_transport)
            async with http:
                transport = streamable_http_client(str(connector.config["url"]), http_client=http)
                async with Client(transport, read_timeout_seconds=timeout_s) as client:
                    return await work(client)

        try:
            return _run_coroutine(lambda: _within(scenario(), timeout_s))
        except BaseException as raised:
            if isinstance(raised, ConnectorError | KeyboardInterrupt | SystemExit):
                raise
            exc = _leaf(raised)
            if isinstance(exc, ConnectorError):
                raise exc from None
            if isinstance(exc, _Refused):
                raise ConnectorError(str(exc), code="destination_blocked") from None
            status = policy_transport.refused_status
            if isinstance(exc, MCPError) and status is not None:
                why = {401: "refused the credentials", 403: "refused access", 404: "has no such endpoint"}
                raise ConnectorError(
                    f"the MCP server {why.get(status, 'answered an error')} (HTTP {status})",
                    code=f"http_{status}",
                    retryable=status == 429 or status >= 500,
                    status_code=status,
                ) from None
            if isinstance(exc, MCPError):
                raise ConnectorError(f"the MCP server answered: {exc.message}", code="mcp_error") from None
            if isinstance(exc, TimeoutError | httpx2.TimeoutException):
                raise ConnectorError(
                    f"no answer within {timeout_s:g} s", code="mcp_timeout", retryable=True
                ) from None
            if isinstance(exc, httpx2.HTTPStatusError):
                status = exc.response.status_code
                raise ConnectorError(
                    f"the MCP server answered HTTP {status}",
                    code=f"http_{status}",
                    retryable=status == 429 or status >= 500,
                    status_code=status,
                ) from None
            if isinstance(exc, httpx2.TransportError | OSError):
                raise ConnectorError(
                    f"connection failed: {type(exc).__name__}", code="mcp_connection_error", retryable=True
                ) from None
            raise ConnectorError(
                f"the MCP exchange failed: {type(exc).__name__}: {exc}", code="mcp_error"
            ) from None

    @classmethod
    def _timeout(cls, connector: Resolved, operation: dict[str, Any] | None = None) -> float:
        configured = float(connector.config.get("timeout_s") or DEFAULT_TIMEOUT_S)
        limit = float((operation or {}).get("timeout_s") or MAX_TIMEOUT_S)
        return max(0.1, min(configured, MAX_TIMEOUT_S, limit))

    @classmethod
    def list_tools(cls, connector: Resolved, timeout_s: float | None = None) -> list[dict[str, Any]]:
        async def work(client: Any) -> list[dict[str, Any]]:
            listed = await client.list_tools()
            tools = list(listed.tools)
            while listed.next_cursor and len(tools) < MAX_TOOLS:
                listed = await client.list_tools(cursor=listed.next_cursor)
                tools.extend(listed.tools)
            return [_tool_view(tool) for tool in tools[:MAX_TOOLS]]

        return cls._session(connector, timeout_s or cls._timeout(connector), work)

    @classmethod
    def call_tool(
        cls, connector: Resolved, tool: str, arguments: dict[str, Any], timeout_s: float
    ) -> dict[str, Any]:
        async def work(client: Any) -> Any:
            await client.list_tools()  # the current revision wants the tool listed before a call
            return await client.call_tool(tool, arguments)

        result = cls._session(connector, timeout_s, work)
        value, text = _result_value(result)
        if len(text.encode()) > MAX_RESULT_BYTES:
            raise ConnectorError(
                f"the tool's result is larger than {MAX_RESULT_BYTES} bytes", code="response_too_large"
            )
        if result.is_error:
            raise ConnectorError(f"the tool {tool!r} failed: {text[:2000]}", code="mcp_tool_error")
        return value

    @classmethod
    def discover(cls, connector: Resolved) -> dict[str, Any]:
        """What the server offers, for the connector's catalogue."""
        return {"tools": cls.list_tools(connector)}

    @classmethod
    def test(cls, connector: Resolved) -> dict[str, Any]:
        tools = cls.list_tools(connector)
        names = ", ".join(t["name"] for t in tools[:10]) + (" …" if len(tools) > 10 else "")
        return {
            "ok": True,
            "detail": f"{len(tools)} tool{'s' if len(tools) != 1 else ''}" + (f": {names}" if tools else ""),
            "catalogue": {"tools": tools},
        }

    @classmethod
    def call(cls, connector: Resolved, step_type: str, operation: dict[str, Any]) -> Any:
        if step_type != "mcp":
            return super().call(connector, step_type, operation)
        timeout = cls._timeout(connector, operation)
        if operation.get("list_tools"):
            return cls.list_tools(connector, timeout)
        tool = operation.get("tool")
        arguments = operation.get("arguments") or {}
        if not isinstance(tool, str) or not tool:
            raise ConnectorError("an MCP call names a tool", code="invalid_operation")
        if not isinstance(arguments, dict):
            raise ConnectorError("an MCP tool's arguments are an object", code="invalid_operation")
        return cls.call_tool(connector, tool, arguments, timeout)


def _run_coroutine(make: Callable[[], Awaitable[T]]) -> T:
    """Runs the exchange on its own event loop: in this thread, or in a helper thread when this one
    already runs a loop (a caller inside async code)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return anyio.run(make)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="falcon-mcp") as helper:
        return helper.submit(anyio.run, make).result()


async def _within(coro: Awaitable[T], timeout_s: float) -> T:
    with anyio.fail_after(timeout_s + 2):
        return await coro
