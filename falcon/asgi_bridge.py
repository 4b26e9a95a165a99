"""Serving an ASGI application from a Django view, on one event loop thread per process.

Falcon runs under WSGI (gunicorn threads, the devstack, the test live server). A protocol whose
reference implementation is an ASGI app (the MCP SDK's Streamable HTTP transport) is served from a
normal Django view, so it keeps Falcon's middleware (probes, request ids, host check, logs), URL map
and authentication: the view authenticates, then hands the request to the bridge with extra scope
keys (``falcon.*``) that the app's handlers read. The body is the one Django already read and bounded
(``DATA_UPLOAD_MAX_MEMORY_SIZE``); the response streams back chunk by chunk, so server-sent events
reach the client as the app sends them; a client that goes away is an ``http.disconnect`` for the app.

The app's lifespan (a context manager, e.g. the session manager's ``run()``) is entered once, on the
bridge's loop, the first time a request needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import Future
from typing import Any

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

ASGIApp = Callable[[dict[str, Any], Any, Any], Any]

_HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer"})
_DONE = object()


class AsgiBridge:
    """``bridge(request, extra_scope)`` answers a Django request with ``app``'s response.

    ``setup`` builds the app and its lifespan on the bridge's loop (so that anything the app creates
    belongs to that loop): an async context manager yielding the ASGI callable.
    """

    def __init__(
        self,
        name: str,
        setup: Callable[[], contextlib.AbstractAsyncContextManager[ASGIApp]],
        *,
        first_byte_timeout: Callable[[], float],
    ) -> None:
        self.name = name
        self._setup = setup
        self._first_byte_timeout = first_byte_timeout
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._app: ASGIApp | None = None
        self._pid: int | None = None

    def _started(self) -> tuple[asyncio.AbstractEventLoop, ASGIApp]:
        import os

        with self._lock:
            if self._loop is None or self._app is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name=f"{self.name}-loop", daemon=True).start()
                ready: Future[ASGIApp] = Future()
                asyncio.run_coroutine_threadsafe(self._lifespan(ready), loop)
                self._app = ready.result(timeout=30)
                self._loop, self._pid = loop, os.getpid()
            return self._loop, self._app

    async def _lifespan(self, ready: Future[ASGIApp]) -> None:
        try:
            async with self._setup() as app:
                ready.set_result(app)
                await asyncio.Event().wait()  # for the life of the process
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
            raise

    def __call__(self, request: HttpRequest, extra_scope: dict[str, Any]) -> HttpResponseBase:
        loop, app = self._started()
        body = request.body
        outbox: queue.Queue[Any] = queue.Queue()
        gone = threading.Event()
        disconnect: list[asyncio.Event] = []

        async def receive() -> dict[str, Any]:
            if not disconnect:
                disconnect.append(asyncio.Event())
                return {"type": "http.request", "body": body, "more_body": False}
            if not gone.is_set():
                await disconnect[0].wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            outbox.put(message)

        async def serve() -> None:
            try:
                await app(_scope(request, extra_scope), receive, send)
            finally:
                outbox.put(_DONE)

        future = asyncio.run_coroutine_threadsafe(serve(), loop)

        def hang_up() -> None:
            gone.set()
            if disconnect:
                loop.call_soon_threadsafe(disconnect[0].set)
            if not future.done():
                # Give the app a moment to notice the disconnect, then stop it.
                loop.call_soon_threadsafe(lambda: loop.call_later(5, future.cancel))

        try:
            start = outbox.get(timeout=self._first_byte_timeout())
        except queue.Empty:
            hang_up()
            return HttpResponse(status=504)
        if start is _DONE or start.get("type") != "http.response.start":
            hang_up()
            future.result(timeout=1)  # re-raises what the app raised
            return HttpResponse(status=500)

        def chunks() -> Iterator[bytes]:
            try:
                while True:
                    message = outbox.get()
                    if message is _DONE:
                        return
                    if message.get("type") != "http.response.body":
                        continue
                    if message.get("body"):
                        yield bytes(message["body"])
                    if not message.get("more_body"):
                        return
            finally:
                hang_up()

        response = StreamingHttpResponse(chunks(), status=start["status"])
        response.headers.pop("Content-Type", None)
        for raw_name, raw_value in start.get("headers") or ():
            name = raw_name.decode("latin-1")
            if name.lower() not in _HOP_BY_HOP:
                response.headers[name] = raw_value.decode("latin-1")
        return response


def _scope(request: HttpRequest, extra: dict[str, Any]) -> dict[str, Any]:
    meta = request.META
    headers: list[tuple[bytes, bytes]] = []
    for key, value in meta.items():
        if key.startswith("HTTP_"):
            name = key[5:].replace("_", "-").lower()
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            name = key.replace("_", "-").lower()
        else:
            continue
        if value:
            headers.append((name.encode("latin-1"), str(value).encode("latin-1")))
    host = request.get_host()
    server_name, _, port = host.partition(":")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method,
        "scheme": request.scheme,
        "path": request.path,
        "raw_path": request.path.encode(),
        "root_path": "",
        "query_string": meta.get("QUERY_STRING", "").encode("latin-1"),
        "headers": headers,
        "client": (meta.get("REMOTE_ADDR") or "", 0),
        "server": (server_name, int(port) if port.isdigit() else (443 if request.is_secure() else 80)),
        "state": {},
        **extra,
    }


@contextlib.asynccontextmanager
async def no_lifespan(app: ASGIApp) -> AsyncIterator[ASGIApp]:
    yield app
