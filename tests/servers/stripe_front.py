"""Stripe on loopback: localstripe (a separate process) behind a front that adds what it lacks.

localstripe (GPL, kept out of the product's dependencies and run as its own process from
``.tools/localstripe``) serves customers, payment methods, plans, subscriptions, invoices and signed
webhooks. It has no Checkout Sessions, Billing Portal or Billing Meters: this front answers those with
the JSON shapes Stripe documents and proxies every other request to localstripe, so the product talks
to one ``STRIPE_API_BASE`` as it would to api.stripe.com.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

ROOT = Path(__file__).resolve().parents[2]
LOCALSTRIPE = ROOT / ".tools" / "localstripe" / "bin" / "localstripe"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _form(body: bytes) -> dict[str, str]:
    return dict(parse_qsl(body.decode(), keep_blank_values=True))


class StripeServers:
    """localstripe on a private port and state folder, and the front on another port."""

    def __init__(self) -> None:
        self.ls_port = _free_port()
        # localstripe saves to a fixed file in the temp folder: give it its own temp folder.
        self.state_dir = tempfile.mkdtemp(prefix="localstripe-")
        self.process = subprocess.Popen(
            [str(LOCALSTRIPE), "--port", str(self.ls_port), "--from-scratch"],
            env={**os.environ, "TMPDIR": self.state_dir},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()
        self.checkout_sessions: list[dict[str, Any]] = []
        self.portal_sessions: list[dict[str, Any]] = []
        self.meter_events: dict[str, dict[str, Any]] = {}  # by identifier: Stripe de-duplicates on it
        self.meter_attempts = 0
        self.fail_meter_events = 0  # answer this many meter event calls with a 500 first
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def localstripe(self) -> str:
        return f"http://127.0.0.1:{self.ls_port}"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("localstripe exited at start-up")
            try:
                with socket.create_connection(("127.0.0.1", self.ls_port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("localstripe did not start")

    def reset(self) -> None:
        """Forgets every object (localstripe's and the front's)."""
        request = urllib.request.Request(f"{self.localstripe}/_config/data", method="DELETE")
        urllib.request.urlopen(request, timeout=10).close()
        self.checkout_sessions.clear()
        self.portal_sessions.clear()
        self.meter_events.clear()
        self.meter_attempts = 0
        self.fail_meter_events = 0

    def webhook_register(self, url: str, secret: str) -> None:
        """localstripe signs and POSTs every event to ``url`` (about a second after it happens)."""
        data = f"url={url}&secret={secret}".encode()
        request = urllib.request.Request(
            f"{self.localstripe}/_config/webhooks/falcon", data=data, method="POST"
        )
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.process.terminate()
        self.process.wait(timeout=10)


def _handler(servers: StripeServers) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in separate writes: with Nagle on, the body waits for the client's
        # delayed ACK (~40 ms a request on Linux).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def do_GET(self) -> None:
            if self.path.startswith("/c/pay/"):
                session_id = self.path.rsplit("/", 1)[1]
                session = next((s for s in servers.checkout_sessions if s["id"] == session_id), None)
                price = session["line_items_price"] if session else "unknown session"
                page = f"<!doctype html><title>Checkout</title><h1>Stripe Checkout (local)</h1><p>{price}</p>"
                data = page.encode()
                self.send_response(200 if session else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
                return
            self._proxy("GET", b"")

        def do_DELETE(self) -> None:
            self._proxy("DELETE", self._body())

        def do_POST(self) -> None:
            body = self._body()
            path = self.path.split("?", 1)[0]
            now = int(time.time())
            if path == "/v1/checkout/sessions":
                form = _form(body)
                session_id = "cs_test_" + secrets.token_hex(12)
                session = {
                    "id": session_id,
                    "object": "checkout.session",
                    "mode": form.get("mode"),
                    "customer": form.get("customer"),
                    "client_reference_id": form.get("client_reference_id"),
                    "success_url": form.get("success_url"),
                    "cancel_url": form.get("cancel_url"),
                    "status": "open",
                    "payment_status": "unpaid",
                    "created": now,
                    "livemode": False,
                    # Stripe hosts this page; the front serves a stand-in so a browser can reach it.
                    "url": f"{servers.base}/c/pay/{session_id}",
                    "line_items_price": form.get("line_items[0][price]"),
                    "metadata": {"falcon_tenant": form.get("metadata[falcon_tenant]")},
                }
                servers.checkout_sessions.append(session)
                self._send(200, session)
            elif path == "/v1/billing_portal/sessions":
                form = _form(body)
                session = {
                    "id": "bps_" + secrets.token_hex(12),
                    "object": "billing_portal.session",
                    "customer": form.get("customer"),
                    "return_url": form.get("return_url"),
                    "created": now,
                    "livemode": False,
                    "url": "https://billing.stripe.com/p/session/test_" + secrets.token_hex(12),
                }
                servers.portal_sessions.append(session)
                self._send(200, session)
            elif path == "/v1/billing/meter_events":
                servers.meter_attempts += 1
                if servers.fail_meter_events > 0:
                    servers.fail_meter_events -= 1
                    self._send(500, {"error": {"type": "api_error", "message": "Try again."}})
                    return
                form = _form(body)
                identifier = form.get("identifier") or secrets.token_hex(8)
                event = servers.meter_events.setdefault(
                    identifier,
                    {
                        "object": "billing.meter_event",
                        "created": now,
                        "event_name": form.get("event_name"),
                        "identifier": identifier,
                        "livemode": False,
                        "payload": {
                            "value": form.get("payload[value]"),
                            "stripe_customer_id": form.get("payload[stripe_customer_id]"),
                        },
                        "timestamp": int(form.get("timestamp") or now),
                    },
                )
                self._send(200, event)
            else:
                self._proxy("POST", body)

        def _proxy(self, method: str, body: bytes) -> None:
            headers = {
                k: v
                for k, v in self.headers.items()
                if k.lower() in {"authorization", "content-type", "idempotency-key"}
            }
            request = urllib.request.Request(
                servers.localstripe + self.path, data=body or None, method=method, headers=headers
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    status, data = response.status, response.read()
            except urllib.error.HTTPError as exc:
                status, data = exc.code, exc.read()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
