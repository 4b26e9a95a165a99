"""A team's MCP server on loopback, built with the official SDK (``MCPServer``) and served by uvicorn:
tools to list and call, one that fails, and a record of the headers each request carried."""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from pydantic import BaseModel


class Forecast(BaseModel):
    city: str
    celsius: float
    summary: str


class McpTestServer:
    def __init__(self, token: str | None = "mcp-secret-token-0123456789") -> None:
        self.token = token
        self.headers: list[dict[str, str]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        server = MCPServer("team-tools", instructions="Tools of the team's own systems.")

        @server.tool(description="Adds two integers.")
        def add(a: int, b: int) -> int:
            self.calls.append(("add", {"a": a, "b": b}))
            return a + b

        @server.tool(description="The weather forecast for a city.")
        def forecast(city: str, units: str = "metric") -> Forecast:
            self.calls.append(("forecast", {"city": city, "units": units}))
            return Forecast(city=city, celsius=21.5, summary=f"sunny in {city} ({units})")

        @server.tool(name="tickets.search", description="Searches the support tickets.")
        def search(query: str, limit: int = 3) -> str:
            self.calls.append(("tickets.search", {"query": query, "limit": limit}))
            return "\n".join(f"ticket {i}: {query}" for i in range(1, limit + 1))

        @server.tool(description="Always fails.")
        def explode() -> str:
            self.calls.append(("explode", {}))
            raise ToolError("the reactor is offline")

        app = server.streamable_http_app(stateless_http=False)
        recorder = self

        async def guarded(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] == "http":
                headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
                recorder.headers.append(headers)
                if recorder.token and headers.get("authorization") != f"Bearer {recorder.token}":
                    await send({"type": "http.response.start", "status": 401, "headers": []})
                    await send({"type": "http.response.body", "body": b""})
                    return
            await app(scope, receive, send)

        # Listening before uvicorn starts: connections wait in the backlog until it serves them.
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        self._sock = sock
        self._server = uvicorn.Server(uvicorn.Config(guarded, log_level="warning", lifespan="on"))
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self._server.serve(sockets=[sock])),
            name="mcp-test-server",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    def reset(self) -> None:
        self.headers.clear()
        self.calls.clear()

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
