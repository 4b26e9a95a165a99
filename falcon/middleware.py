"""Request-wide concerns: a request id for logs and audit, and the body size limit."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from falcon import logs
from falcon.errors import error_body

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{8,128}$")


def current_request_id() -> str | None:
    return logs.current().get("request_id")


class RequestIdMiddleware:
    """Takes a caller's sane ``X-Request-ID`` or makes one, and echoes it on the response."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        # A fresh log context per request: whatever the view binds (tenant, run) ends with it.
        token = logs.fresh()
        logs.bind(request_id=request_id)
        try:
            response = self.get_response(request)
        finally:
            logs.unbind(token)
        response["X-Request-ID"] = request_id
        return response


class ProbeMiddleware:
    """Answers ``/healthz``, ``/readyz`` and ``/metrics`` before anything else: orchestrators, load
    balancers and Prometheus come by address, over plain HTTP, so the host check, the HTTPS redirect and
    sessions must not apply to them (``/metrics`` has its own token)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        from falcon import metrics, views

        self.get_response = get_response
        self.probes: dict[str, Callable[[HttpRequest], HttpResponse]] = {
            "/healthz": views.healthz,
            "/readyz": views.readyz,
            "/metrics": metrics.metrics_view,
        }

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = self.probes.get(request.path_info)
        if probe is not None and request.method in ("GET", "HEAD"):
            return probe(request)
        return self.get_response(request)


class BodySizeLimitMiddleware:
    """Refuses a request whose declared body exceeds ``FALCON_MAX_BODY_BYTES`` before reading it.

    Bodies sent without a length (chunked) are still capped by Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``
    when read, which the API's exception handler turns into the same 413.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        limit = settings.FALCON_MAX_BODY_BYTES
        declared = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(declared)
        except ValueError:
            return JsonResponse(
                error_body("invalid_content_length", "The Content-Length header is not a number."), status=400
            )
        if length > limit:
            return JsonResponse(
                error_body("payload_too_large", f"The request body exceeds the limit of {limit} bytes."),
                status=413,
            )
        return self.get_response(request)
