"""A loopback HTTP API for connector tests: echoes auth, redirects, OAuth2 tokens, big and slow answers."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class HttpApiServer:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.received: list[dict[str, Any]] = []
        self.tokens_issued = 0
        self.httpd = ThreadingHTTPServer((host, 0), _handler(self))
        self.httpd.daemon_threads = True
        self.host = host
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _handler(server: HttpApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in separate writes: with Nagle on, the body waits for the client's
        # delayed ACK (~40 ms a request on Linux).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header(
                "Content-Type",
                "application/json" if not isinstance(payload, bytes) else "application/octet-stream",
            )
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._route("GET", b"")

        def do_POST(self) -> None:
            self._route("POST", self._body())

        def _route(self, method: str, body: bytes) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            server.received.append(
                {
                    "method": method,
                    "path": url.path,
                    "query": query,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body,
                }
            )
            if url.path == "/oauth/token":
                form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
                if form.get("client_secret") != "cs-0123456789abcdef":
                    self._send(401, {"error": "invalid_client"})
                    return
                server.tokens_issued += 1
                self._send(200, {"access_token": f"tok{server.tokens_issued}", "expires_in": 3600})
            elif url.path == "/protected":
                expected = f"Bearer tok{server.tokens_issued}"
                ok = self.headers.get("Authorization") == expected
                self._send(200 if ok else 401, {"ok": ok})
            elif url.path == "/redirect":
                self._send(302, {}, {"Location": query["to"]})
            elif url.path == "/big":
                self._send(200, b"x" * int(query.get("n", "100000")))
            elif url.path == "/slow":
                time.sleep(float(query.get("s", "2")))
                self._send(200, {"slow": True})
            elif url.path.startswith("/status/"):
                self._send(int(url.path.rsplit("/", 1)[1]), {"status": "as asked"})
            else:
                try:
                    parsed = json.loads(body) if body else None
                except ValueError:
                    parsed = body.decode(errors="replace")
                self._send(200, {"path": url.path, "query": query, "method": method, "json": parsed})

    return Handler
