"""Falcon agents as MCP tools: ``/api/mcp`` speaks the Model Context Protocol (Streamable HTTP).

Built on the official SDK's server (``mcp.server.lowlevel.Server`` and its Streamable HTTP session
manager), served from a Django view through ``falcon.asgi_bridge`` so that the endpoint shares
Falcon's middleware, host check and API keys. Protocol revisions: the current one (2026-07-28, one
self-contained request per POST, found with ``server/discover``) and the initialize-handshake ones
(2024-11-05 … 2025-11-25) in the SDK's stateless mode: no ``Mcp-Session-Id`` is issued, so any web
process of any machine can answer any request (the spec lets a server do without sessions; the
2026-07-28 revision has none).

- Authentication: ``Authorization: Bearer flk_…`` with the ``run`` scope (checked by the view before
  the SDK sees the request; 401/403 otherwise).
- ``tools/list``: the published agents the key may run (per-object rights included). Name: the
  agent's name with anything outside ``[A-Za-z0-9._-]`` turned into ``_`` (``_<8 hex of its id>``
  appended when two agents would share one); description: the agent's; ``inputSchema``: the
  published version's input schema.
- ``tools/call``: starts a run (trigger ``mcp``) through the normal run path (quotas, audit, logs),
  waits for it (``FALCON_MCP_WAIT_S``), and answers the output as text and ``structuredContent``
  (an object output as is, anything else as ``{"result": …}``). A run that fails, a refused start
  (quota, invalid input) or a run still going at the deadline is a tool error (``isError``) naming
  the run id. With a ``progressToken`` the client gets a progress notification per recorded step.
- Each call in progress holds one of the tenant's live-stream slots (``FALCON_EVENT_STREAMS*``).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
import mcp_types as types
from django.conf import settings
from django.db import close_old_connections
from django.http.response import HttpResponseBase
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from rest_framework.request import Request
from rest_framework.response import Response

from agents.ecosystem.keys import RunKeyView
from agents.runs import events as run_events
from agents.runs import services as run_services
from agents.runs.models import Run
from agents.workflows.models import Agent
from falcon.asgi_bridge import AsgiBridge
from falcon.errors import FalconError
from tenants.access import TenantContext
from tenants.object_access import object_allows, visible_filter
from tenants.permissions import Action

SCOPE_KEY = "falcon.mcp.caller"
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
T = TypeVar("T")


@dataclass(frozen=True)
class AgentTool:
    name: str
    agent: Agent


def _runnable(ctx: TenantContext) -> list[Agent]:
    agents = Agent.objects.filter(
        tenant=ctx.tenant, archived_at__isnull=True, published_version__isnull=False
    ).select_related("published_version")
    narrowing = visible_filter(ctx, Agent)
    if narrowing is not None:
        agents = agents.filter(narrowing)
    return [a for a in agents.order_by("name", "created_at") if object_allows(ctx, Action.AGENTS_RUN, a)]


def agent_tools(ctx: TenantContext) -> list[AgentTool]:
    """The caller's runnable agents with their tool names (stable: the same agents give the same names)."""
    tools: list[AgentTool] = []
    taken: set[str] = set()
    for agent in _runnable(ctx):
        name = _NAME_UNSAFE.sub("_", agent.name).strip("_")[:110] or "agent"
        if name.lower() in taken:
            name = f"{name}_{agent.pk.hex[:8]}"
        taken.add(name.lower())
        tools.append(AgentTool(name, agent))
    return tools


def _input_schema(agent: Agent) -> dict[str, Any]:
    from agents.engine.spec import spec_for_version

    version = agent.published_version
    assert version is not None
    schema = spec_for_version(version.pk, version.definition).inputs
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return {"type": "object"}
    return schema


def _list(ctx: TenantContext) -> list[types.Tool]:
    return [
        types.Tool(
            name=tool.name,
            title=tool.agent.name,
            description=tool.agent.description or f"Runs the Falcon agent {tool.agent.name!r}.",
            input_schema=_input_schema(tool.agent),
        )
        for tool in agent_tools(ctx)
    ]


def _find(ctx: TenantContext, name: str) -> Agent | None:
    tools = agent_tools(ctx)
    for tool in tools:
        if tool.name == name:
            return tool.agent
    with contextlib.suppress(ValueError):
        wanted = uuid.UUID(name)
        return next((t.agent for t in tools if t.agent.pk == wanted), None)
    return None


def _text_result(text: str, *, error: bool, structured: Any = None) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(text=text)], structured_content=structured, is_error=error
    )


def _call(
    ctx: TenantContext, name: str, arguments: dict[str, Any], progress: Callable[[int, str], None], stop: Any
) -> types.CallToolResult:
    agent = _find(ctx, name)
    if agent is None:
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {name}")
    refused = run_events.limits.acquire(ctx.tenant.pk)
    if refused is not None:
        whose = "this organization has" if refused == "tenant" else "this server has"
        return _text_result(
            f"Too many calls in progress: {whose} as many as allowed; retry shortly.", error=True
        )
    try:
        try:
            run, _ = run_services.run_start(
                agent=agent, input=arguments, actor=ctx.actor, trigger=Run.Trigger.MCP
            )
        except FalconError as refusal:
            where = f" (field {refusal.field})" if refusal.field else ""
            return _text_result(f"{refusal.code}: {refusal.message}{where}", error=True)
        deadline = time.monotonic() + settings.FALCON_MCP_WAIT_S
        done = 0
        for kind, data, _ in run_events.follow(run.pk, deadline):
            if stop.is_set():
                break
            if kind == "step":
                done += 1
                progress(done, f"step {data['key']} {data['status']}")
        run = Run.objects.get(pk=run.pk)
    finally:
        run_events.limits.release(ctx.tenant.pk)
    if run.status == Run.Status.SUCCEEDED:
        output = run.output
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False, default=str)
        structured = output if isinstance(output, dict) else {"result": output}
        return _text_result(text, error=False, structured=structured)
    if run.status not in Run.FINISHED:
        return _text_result(
            f"The run {run.pk} is still {run.status} after {settings.FALCON_MCP_WAIT_S} s; "
            f"follow it at /api/v1/runs/{run.pk}.",
            error=True,
            structured={"run_id": str(run.pk), "status": run.status},
        )
    error = run.error or {}
    detail = error.get("message") or error.get("code") or ""
    return _text_result(
        f"The run {run.pk} ended {run.status}: {detail}".strip(),
        error=True,
        structured={"run_id": str(run.pk), "status": run.status, "error": error},
    )


def _with_database(fn: Callable[..., T], *args: Any) -> T:
    """Runs ``fn`` in a worker thread of the bridge's loop, with a fresh database connection."""
    close_old_connections()
    try:
        return fn(*args)
    finally:
        close_old_connections()
        from django.db import connection

        if not connection.in_atomic_block:
            connection.close()


def _caller(request_ctx: Any) -> TenantContext:
    request = request_ctx.request
    caller = request.scope.get(SCOPE_KEY) if request is not None else None
    if caller is None:  # only the authenticated view reaches the app
        raise MCPError(types.INVALID_REQUEST, "Not authenticated.")
    return caller


async def _on_list_tools(request_ctx: Any, params: Any) -> types.ListToolsResult:
    ctx = _caller(request_ctx)
    tools = await anyio.to_thread.run_sync(_with_database, _list, ctx)
    return types.ListToolsResult(tools=tools)


async def _on_call_tool(request_ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
    ctx = _caller(request_ctx)
    stop = threading.Event()

    def progress(done: int, message: str) -> None:
        anyio.from_thread.run(request_ctx.session.report_progress, float(done), None, message)

    try:
        return await anyio.to_thread.run_sync(
            _with_database,
            _call,
            ctx,
            params.name,
            dict(params.arguments or {}),
            progress,
            stop,
            abandon_on_cancel=True,
        )
    finally:
        stop.set()  # a client that went away: the waiting thread stops at its next event


def _server() -> Server[Any]:
    return Server(
        "falcon",
        title="Falcon agents",
        instructions=(
            "Each tool runs one of your organization's published Falcon agents and returns its output."
        ),
        on_list_tools=_on_list_tools,
        on_call_tool=_on_call_tool,
    )


@contextlib.asynccontextmanager
async def _serve() -> AsyncIterator[Any]:
    manager = StreamableHTTPSessionManager(
        _server(),
        stateless=True,
        # Django's ALLOWED_HOSTS already checked the Host; the endpoint takes bearer keys, never cookies.
        security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        max_request_body_size=settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 2_621_440,
    )
    async with manager.run():
        yield manager.handle_request


bridge = AsgiBridge("falcon-mcp", _serve, first_byte_timeout=lambda: settings.FALCON_MCP_WAIT_S + 30)


def _jsonrpc_error(status: int, message: str, code: int = types.INVALID_REQUEST) -> Response:
    return Response(
        {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}, status=status
    )


@extend_schema(exclude=True)
class McpView(RunKeyView):
    """``/api/mcp``: the key is checked here; the SDK's transport answers the rest."""

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        status = response.status_code
        detail = exc.message if isinstance(exc, FalconError) else str(getattr(exc, "detail", exc))
        answer = _jsonrpc_error(status, detail)
        for header in ("WWW-Authenticate", "Retry-After"):
            if header in response:
                answer[header] = response[header]
        return answer

    def _serve(self, request: Request) -> HttpResponseBase:
        return bridge(request._request, {SCOPE_KEY: self.ctx})

    post = get = delete = _serve


mcp_view = csrf_exempt(McpView.as_view())
