"""An OpenAI-compatible endpoint: any OpenAI client runs a Falcon agent as a "model".

``POST /api/openai/v1/chat/completions`` with ``model = "agent:<name or id>"`` starts a run of the
agent's published version through the normal run path (the key's tenant, quotas, audit, logs) and
answers in OpenAI's chat completion format; ``GET /api/openai/v1/models`` lists the agents the key may
run. Errors use OpenAI's error shape on these routes.

The run's input: ``{"message": <the last user message's text>, "messages": [<every message>]}``,
keeping only the properties the agent's input schema declares when it declares some (an agent whose
schema names neither gets both); an ``input`` object in the request body (the SDK's ``extra_body``)
is merged over it, for agents that take other fields. The answer's content is the run's output (text as
is, anything else as JSON); ``usage`` carries the run's tokens.

``stream: true`` answers with server-sent chunks as the run's steps are recorded (each an empty
delta carrying ``falcon_step``), then the output as content, a final chunk with ``finish_reason`` (and
``usage`` when ``stream_options.include_usage``), then ``data: [DONE]``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions as drf_exceptions
from rest_framework.request import Request
from rest_framework.response import Response

from agents.ecosystem.keys import RunKeyView
from agents.errors import TooManyStreams
from agents.runs import events as run_events
from agents.runs import services as run_services
from agents.runs.models import Run
from agents.workflows.models import Agent
from falcon.errors import FalconError
from tenants.object_access import object_allows, visible_filter
from tenants.permissions import Action

MODEL_PREFIX = "agent:"


class OpenAiError(Exception):
    def __init__(self, status: int, message: str, type_: str, code: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type_, code, param


def _error(status: int, message: str, type_: str, code: str, param: str | None = None) -> Response:
    return Response(
        {"error": {"message": message, "type": type_, "param": param, "code": code}}, status=status
    )


_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error"}
_TYPES |= {404: "invalid_request_error", 409: "invalid_request_error", 429: "rate_limit_error"}


class _OpenAiView(RunKeyView):
    """API keys only (programs), errors in OpenAI's shape, excluded from Falcon's own schema."""

    def handle_exception(self, exc: Exception) -> Response:
        if isinstance(exc, OpenAiError):
            return _error(exc.status, exc.message, exc.type, exc.code, exc.param)
        if isinstance(exc, FalconError):
            status = exc.status_code
            return _error(status, exc.message, _TYPES.get(status, "api_error"), exc.code, exc.field)
        if isinstance(exc, drf_exceptions.APIException):
            status = exc.status_code
            code = str(getattr(exc.detail, "code", None) or exc.default_code)
            return _error(status, str(exc.detail), _TYPES.get(status, "api_error"), code)
        raise exc

    def runnable(self) -> Any:
        agents = Agent.objects.filter(
            tenant=self.ctx.tenant, archived_at__isnull=True, published_version__isnull=False
        ).select_related("published_version")
        narrowing = visible_filter(self.ctx, Agent)
        return agents.filter(narrowing) if narrowing is not None else agents


def _model_id(agent: Agent) -> str:
    return f"{MODEL_PREFIX}{agent.name}"


@extend_schema(exclude=True)
class ModelsView(_OpenAiView):
    def get(self, request: Request) -> HttpResponse:
        agents = [
            a for a in self.runnable().order_by("name") if object_allows(self.ctx, Action.AGENTS_RUN, a)
        ]
        data = [
            {
                "id": _model_id(a),
                "object": "model",
                "created": int(a.created_at.timestamp()),
                "owned_by": "falcon",
            }
            for a in agents
        ]
        return JsonResponse({"object": "list", "data": data})


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts: keep the text ones
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, dict) and p.get("type") == "text"
        )
    return ""


def _run_input(agent: Agent, messages: list[dict[str, Any]], extra: Any) -> dict[str, Any]:
    last_user = next((m for m in reversed(messages) if m.get("role") == "user"), None)
    candidate = {
        "message": _text(last_user.get("content")) if last_user else "",
        "messages": [{"role": m.get("role"), "content": _text(m.get("content"))} for m in messages],
    }
    from agents.engine.spec import spec_for_version

    version = agent.published_version
    assert version is not None  # runnable() lists published agents only
    schema = spec_for_version(version.pk, version.definition).inputs
    declared = set((schema.get("properties") or {}).keys()) if isinstance(schema, dict) else set()
    chosen = {k: v for k, v in candidate.items() if k in declared} if declared & set(candidate) else candidate
    if declared and not declared & set(candidate):
        chosen = {}
    if extra is not None:
        if not isinstance(extra, dict):
            raise OpenAiError(
                400, "input must be an object.", "invalid_request_error", "invalid_input", "input"
            )
        chosen = {**chosen, **extra}
    return chosen


def _content(output: Any) -> str:
    return output if isinstance(output, str) else json.dumps(output, ensure_ascii=False, default=str)


def _usage(run: Run) -> dict[str, int]:
    return {
        "prompt_tokens": run.prompt_tokens,
        "completion_tokens": run.completion_tokens,
        "total_tokens": run.prompt_tokens + run.completion_tokens,
    }


@extend_schema(exclude=True)
class ChatCompletionsView(_OpenAiView):
    def post(self, request: Request) -> HttpResponseBase:
        body = request.data
        if not isinstance(body, dict):
            raise OpenAiError(400, "The body must be a JSON object.", "invalid_request_error", "invalid_body")
        model = body.get("model")
        if not isinstance(model, str) or not model.startswith(MODEL_PREFIX):
            raise OpenAiError(
                400,
                f"model must name an agent: '{MODEL_PREFIX}<agent name or id>'.",
                "invalid_request_error",
                "model_not_found",
                "model",
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise OpenAiError(
                400,
                "messages must be a non-empty list of messages.",
                "invalid_request_error",
                "invalid_messages",
                "messages",
            )
        agent = self._agent(model.removeprefix(MODEL_PREFIX))
        run, _ = run_services.run_start(
            agent=agent,
            input=_run_input(agent, messages, body.get("input")),
            actor=self.ctx.actor,
            trigger=Run.Trigger.API,
        )
        completion_id = f"chatcmpl-{run.pk.hex}"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            refused = run_events.limits.acquire(run.tenant_id)
            if refused is not None:
                raise TooManyStreams(refused)  # the run goes on: GET /api/v1/runs/{id} has it
            stream = _CompletionStream(run, model, completion_id, include_usage)
            response = StreamingHttpResponse(stream, content_type="text/event-stream")
            response["Cache-Control"] = "no-cache"
            response["X-Accel-Buffering"] = "no"
            return response
        run = run_services.run_wait(run.pk, settings.FALCON_OPENAI_WAIT_S)
        _raise_unless_succeeded(run)
        return JsonResponse(
            {
                "id": completion_id,
                "object": "chat.completion",
                "created": int(run.created_at.timestamp()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": _content(run.output)},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": _usage(run),
                "falcon_run_id": str(run.pk),
            }
        )

    def _agent(self, ref: str) -> Agent:
        agents = self.runnable()
        try:
            found = agents.filter(pk=uuid.UUID(ref)).first()
        except ValueError:
            found = agents.filter(name__iexact=ref).first()
        if found is None:
            raise OpenAiError(
                404,
                f"No published agent {ref!r} that this key may run.",
                "invalid_request_error",
                "model_not_found",
                "model",
            )
        if not object_allows(self.ctx, Action.AGENTS_RUN, found):
            raise OpenAiError(
                403, "This key may not run this agent.", "permission_error", "permission_denied", "model"
            )
        return found


def _raise_unless_succeeded(run: Run) -> None:
    if run.status == Run.Status.SUCCEEDED:
        return
    if run.status not in Run.FINISHED:
        raise OpenAiError(
            504,
            f"The run {run.pk} is still {run.status}; follow it at /api/v1/runs/{run.pk}.",
            "timeout",
            "run_not_finished",
        )
    error = run.error or {}
    raise OpenAiError(
        500 if error.get("code") == "internal_error" else 502,
        f"The run {run.pk} ended {run.status}: {error.get('message') or error.get('code') or ''}".strip(),
        "api_error",
        str(error.get("code") or run.status),
    )


class _CompletionStream:
    """The SSE body of a streamed completion: chunks as the run's steps are recorded, then the answer."""

    def __init__(self, run: Run, model: str, completion_id: str, include_usage: bool) -> None:
        self.run = run
        self.model = model
        self.id = completion_id
        self.include_usage = include_usage
        self.created = int(time.time())
        self._closed = False

    def close(self) -> None:
        """Gives the stream's slot back (called by the server when the response ends, read or not)."""
        if not self._closed:
            self._closed = True
            run_events.limits.release(self.run.tenant_id)

    def _chunk(self, delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        chunk = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            **extra,
        }
        return f"data: {json.dumps(chunk, default=str)}\n\n".encode()

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._chunks()
        finally:
            self.close()

    def _chunks(self) -> Iterator[bytes]:
        yield self._chunk({"role": "assistant", "content": ""}, falcon_run_id=str(self.run.pk))
        deadline = time.monotonic() + settings.FALCON_OPENAI_WAIT_S
        for kind, data, _ in run_events.follow(self.run.pk, deadline):
            if kind == "step":
                step = {k: data[k] for k in ("key", "step_type", "status", "latency_ms")}
                yield self._chunk({}, falcon_step=step)
        run = Run.objects.get(pk=self.run.pk)
        try:
            _raise_unless_succeeded(run)
        except OpenAiError as failure:
            error = {"message": failure.message, "type": failure.type, "param": None, "code": failure.code}
            yield f"data: {json.dumps({'error': error})}\n\n".encode()
            yield b"data: [DONE]\n\n"
            return
        yield self._chunk({"content": _content(run.output)})
        yield self._chunk({}, "stop")
        if self.include_usage:
            usage = {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": _usage(run),
            }
            yield f"data: {json.dumps(usage)}\n\n".encode()
        yield b"data: [DONE]\n\n"
