"""A real loopback HTTP server speaking four LLM providers' wire formats, scriptable per test.

- OpenAI     POST /v1/chat/completions
- Anthropic  POST /v1/messages
- Gemini     POST /v1beta/models/{model}:generateContent
- Ollama     POST /api/chat

Each request takes the first queued ``Reply`` meant for its provider (or for any provider); with none
queued it echoes the last user message. Every request is recorded for assertions.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

GEMINI_PATH = re.compile(r"^/v1beta/models/(?P<model>[^:]+):generateContent$")


@dataclass
class Reply:
    text: str | None = None
    json_value: Any = None
    tool_calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (name, arguments)
    status: int = 200
    delay_s: float = 0.0
    prompt_tokens: int = 10
    completion_tokens: int = 5
    provider: str | None = None  # None: any provider
    arrived: threading.Event | None = None  # set when the request taking this reply has arrived
    hold: threading.Event | None = None  # the answer waits for it (at most 30 s)


@dataclass
class Received:
    provider: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def last_user_text(self) -> str:
        return _last_user_text(self.provider, self.body)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _last_user_text(provider: str, body: dict[str, Any]) -> str:
    if provider == "gemini":
        for content in reversed(body.get("contents", [])):
            if content.get("role") == "user":
                return " ".join(p.get("text", "") for p in content.get("parts", []) if "text" in p)
        return ""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return _text_of(message.get("content"))
    return ""


class _Server(ThreadingHTTPServer):
    # Hundreds of calls may connect at once (the worker's I/O concurrency): the default backlog of 5
    # would make the kernel drop connections and the client retry a second later.
    request_queue_size = 1024


class LlmServer:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[Reply] = []
        self.received: list[Received] = []
        self.default_delay_s = 0.0
        self.in_flight = 0
        self.peak_in_flight = 0
        server = self
        self.httpd = _Server(("127.0.0.1", 0), _handler(server))
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 1024
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    # --- control -----------------------------------------------------------------------------------

    def start(self) -> LlmServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.received.clear()
            self.default_delay_s = 0.0
            self.peak_in_flight = 0

    def enqueue(self, *replies: Reply) -> None:
        with self._lock:
            self._queue.extend(replies)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def provider_settings(self) -> dict[str, dict[str, str]]:
        """FALCON_LLM_PROVIDERS pointing every provider at this server."""
        return {
            "openai": {"api_key": "sk-test-openai-key-123456", "api_base": f"{self.base}/v1"},
            "anthropic": {"api_key": "sk-ant-test-key-123456", "api_base": self.base},
            "gemini": {"api_key": "gemini-test-key-123456", "api_base": f"{self.base}/v1beta"},
            "ollama": {"api_key": "", "api_base": self.base},
        }

    def provider_env(self) -> dict[str, str]:
        """The same as environment variables, for worker subprocesses."""
        s = self.provider_settings()
        return {
            "OPENAI_API_KEY": s["openai"]["api_key"],
            "OPENAI_BASE_URL": s["openai"]["api_base"],
            "ANTHROPIC_API_KEY": s["anthropic"]["api_key"],
            "ANTHROPIC_BASE_URL": s["anthropic"]["api_base"],
            "GEMINI_API_KEY": s["gemini"]["api_key"],
            "GEMINI_API_BASE": s["gemini"]["api_base"],
            "OLLAMA_API_BASE": s["ollama"]["api_base"],
        }

    def requests_for(self, provider: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.provider == provider]

    # --- serving -----------------------------------------------------------------------------------

    def _take(self, provider: str) -> Reply | None:
        with self._lock:
            for index, reply in enumerate(self._queue):
                if reply.provider in (None, provider):
                    return self._queue.pop(index)
        return None

    def answer(
        self, provider: str, path: str, headers: dict[str, str], body: dict[str, Any]
    ) -> tuple[int, Any]:
        received = Received(provider, path, headers, body)
        with self._lock:
            self.received.append(received)
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            reply = self._take(provider) or Reply(text=f"echo: {received.last_user_text}")
            if reply.arrived is not None:
                reply.arrived.set()
            if reply.hold is not None:
                reply.hold.wait(30)
            delay = reply.delay_s or self.default_delay_s
            if delay:
                time.sleep(delay)
            if reply.status != 200:
                return reply.status, _error_body(provider, reply.status, reply.text)
            text = json.dumps(reply.json_value) if reply.json_value is not None else (reply.text or "")
            model = body.get("model") or GEMINI_PATH.match(path).group("model")  # type: ignore[union-attr]
            return 200, _FORMATS[provider](model, text, reply)
        finally:
            with self._lock:
                self.in_flight -= 1


def _error_body(provider: str, status: int, text: str | None = None) -> dict[str, Any]:
    message = text or ("rate limited" if status == 429 else f"upstream error {status}")
    if provider == "anthropic":
        kind = "rate_limit_error" if status == 429 else "api_error"
        return {"type": "error", "error": {"type": kind, "message": message}}
    if provider == "gemini":
        return {
            "error": {
                "code": status,
                "message": message,
                "status": "RESOURCE_EXHAUSTED" if status == 429 else "INTERNAL",
            }
        }
    if provider == "ollama":
        return {"error": message}
    return {"error": {"message": message, "type": "server_error", "code": None}}


def _openai(model: str, text: str, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": text if not reply.tool_calls else (text or None),
    }
    if reply.tool_calls:
        message["tool_calls"] = [
            {
                "id": f"call_{uuid.uuid4().hex[:8]}",
                "type": "function",
                "function": {"name": name, "arguments": json.dumps(args)},
            }
            for name, args in reply.tool_calls
        ]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {"index": 0, "message": message, "finish_reason": "tool_calls" if reply.tool_calls else "stop"}
        ],
        "usage": {
            "prompt_tokens": reply.prompt_tokens,
            "completion_tokens": reply.completion_tokens,
            "total_tokens": reply.prompt_tokens + reply.completion_tokens,
        },
    }


def _anthropic(model: str, text: str, reply: Reply) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text or not reply.tool_calls else []
    content += [
        {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:8]}", "name": name, "input": args}
        for name, args in reply.tool_calls
    ]
    return {
        "id": f"msg_{uuid.uuid4().hex[:12]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if reply.tool_calls else "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": reply.prompt_tokens, "output_tokens": reply.completion_tokens},
    }


def _gemini(model: str, text: str, reply: Reply) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"text": text}] if text or not reply.tool_calls else []
    parts += [{"functionCall": {"name": name, "args": args}} for name, args in reply.tool_calls]
    return {
        "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
        "usageMetadata": {
            "promptTokenCount": reply.prompt_tokens,
            "candidatesTokenCount": reply.completion_tokens,
            "totalTokenCount": reply.prompt_tokens + reply.completion_tokens,
        },
        "modelVersion": model,
    }


def _ollama(model: str, text: str, reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"function": {"name": name, "arguments": args}} for name, args in reply.tool_calls
        ]
    return {
        "model": model,
        "created_at": "2026-01-01T00:00:00Z",
        "message": message,
        "done": True,
        "done_reason": "stop",
        "prompt_eval_count": reply.prompt_tokens,
        "eval_count": reply.completion_tokens,
        "total_duration": 1,
        "load_duration": 1,
        "prompt_eval_duration": 1,
        "eval_duration": 1,
    }


_FORMATS = {"openai": _openai, "anthropic": _anthropic, "gemini": _gemini, "ollama": _ollama}


def _handler(server: LlmServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body leave in separate writes: with Nagle on, the body waits for the client's
        # delayed ACK (~40 ms a request on Linux).
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:
            return None

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b"{}"
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                body = {}
            path = self.path.split("?", 1)[0]
            if path.endswith("/chat/completions"):
                provider = "openai"
            elif path.endswith("/v1/messages"):
                provider = "anthropic"
            elif GEMINI_PATH.match(path):
                provider = "gemini"
            elif path == "/api/chat":
                provider = "ollama"
            else:
                self._send(404, {"error": f"unknown path {path}"})
                return
            status, payload = server.answer(
                provider, path, {k.lower(): v for k, v in self.headers.items()}, body
            )
            self._send(status, payload)

        def _send(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


if __name__ == "__main__":  # a standalone server for benchmarks: python -m tests.servers.llm [delay_s]
    import sys

    standalone = LlmServer()
    standalone.default_delay_s = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0
    print(standalone.port, flush=True)
    standalone.httpd.serve_forever()
