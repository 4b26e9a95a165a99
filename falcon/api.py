"""API plumbing shared by every app: the error shape, pagination and strict request bodies."""

from __future__ import annotations

import logging
from typing import Any

from django.core import exceptions as django_exceptions
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.csrf import csrf_failure as default_csrf_failure
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions as drf_exceptions
from rest_framework import serializers
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response
from rest_framework.routers import SimpleRouter
from rest_framework.views import set_rollback

from falcon.errors import FalconError, error_body, error_parts, json_error
from falcon.middleware import current_request_id

logger = logging.getLogger(__name__)


def _plain(detail: Any) -> Any:
    """ErrorDetail trees as plain JSON values."""
    if isinstance(detail, dict):
        return {str(key): _plain(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_plain(item) for item in detail]
    return str(detail)


def _validation_response(detail: Any) -> Response:
    fields = _plain(detail)
    if not isinstance(fields, dict):
        fields = {"non_field_errors": fields if isinstance(fields, list) else [fields]}
    first = next(iter(fields.items()), None)
    message = "The request is not valid."
    if first is not None:
        name, problems = first
        text = (
            problems[0] if isinstance(problems, list) and problems and isinstance(problems[0], str) else None
        )
        if text:
            message = text if name == "non_field_errors" else f"{name}: {text}"
    return Response(error_body("invalid", message, fields), status=400)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    """DRF's exception handler, answering every failure in ``{"error": {code, message, fields}}``."""
    if isinstance(exc, FalconError):
        set_rollback()
        body, status_code, refusal_headers = error_parts(exc)
        return Response(body, status=status_code, headers=refusal_headers or None)
    if isinstance(exc, Http404 | django_exceptions.ObjectDoesNotExist):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, django_exceptions.PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    elif isinstance(exc, django_exceptions.RequestDataTooBig):
        return Response(error_body("payload_too_large", "The request body is too large."), status=413)
    elif isinstance(exc, django_exceptions.ValidationError):
        exc = drf_exceptions.ValidationError(
            exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
        )

    if isinstance(exc, drf_exceptions.ValidationError):
        set_rollback()
        return _validation_response(exc.detail)
    if isinstance(exc, drf_exceptions.ParseError):
        return Response(
            error_body("malformed_body", f"The request body could not be parsed: {exc.detail}"), 400
        )
    if isinstance(exc, drf_exceptions.APIException):
        set_rollback()
        headers: dict[str, str] = {}
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
        wait = getattr(exc, "wait", None)
        if wait is not None:
            headers["Retry-After"] = str(int(wait))
        code = getattr(exc.detail, "code", None) or exc.default_code
        message = str(exc.detail) if isinstance(exc.detail, str) else str(exc.default_detail)
        return Response(error_body(str(code), message), status=exc.status_code, headers=headers)

    logger.exception("Unhandled error in %s", context.get("view").__class__.__name__)
    set_rollback()
    return Response(
        error_body("internal_error", f"An unexpected error occurred (request id {current_request_id()})."),
        status=500,
    )


MACHINE_PREFIXES = ("/api/", "/hooks/", "/billing/")


def _json_error_view(status: int, code: str, message: str) -> Any:
    def view(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
        return json_error(status, code, message)

    return view


def wants_html(request: HttpRequest) -> bool:
    """A person's browser on a page path (not the API, hooks or Stripe's webhook): answer with a page."""
    if request.path.startswith(MACHINE_PREFIXES):
        return False
    return "text/html" in request.headers.get("Accept", "")


def _error_view(status: int, code: str, message: str) -> Any:
    """Django-level refusals: JSON in the API's shape for programs, the product's error page for people."""

    def view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
        if wants_html(request):
            return render(request, "error.html", {"status": status, "message": message}, status=status)
        return json_error(status, code, message)

    return view


# Django-level handlers (URLs no view matched, middleware failures).
handler400 = _error_view(400, "bad_request", "The request could not be understood.")
handler403 = _error_view(403, "permission_denied", "You do not have permission to perform this action.")
handler404 = _error_view(404, "not_found", "Not found.")
# Unknown paths under the machine-facing prefixes, whatever the method: no CSRF page for a POST.
unknown_api_path = csrf_exempt(_json_error_view(404, "not_found", "Not found."))


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF refusals in the API's shape under the machine-facing prefixes, Django's page elsewhere."""
    if request.path.startswith(MACHINE_PREFIXES):
        return json_error(403, "csrf_failed", "The request was refused: CSRF verification failed.")
    return default_csrf_failure(request, reason=reason)


def handler500(request: HttpRequest) -> HttpResponse:
    if wants_html(request):
        # A plain template with no context processors' queries: the database may be what failed.
        page = (
            "<!doctype html><html lang=en><meta charset=utf-8><title>Error · Falcon</title>"
            "<link rel=icon href=data:,><body style='font-family:system-ui;margin:3rem auto;max-width:36rem'>"
            "<h1>Something went wrong on our side</h1><p>The error was recorded (request id "
            f"{current_request_id()}). Please try again; if it persists, tell us the id.</p>"
            "<p><a href='/'>Back to the overview</a></p></body></html>"
        )
        return HttpResponse(page, status=500)
    return JsonResponse(
        error_body("internal_error", f"An unexpected error occurred (request id {current_request_id()})."),
        status=500,
    )


class FalconCursorPagination(CursorPagination):
    """Stable pages under concurrent inserts; ``?limit=`` up to 200."""

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200


class StrictSerializerMixin:
    """Refuses fields a write does not know, instead of silently dropping them."""

    initial_data: Any

    def to_internal_value(self, data: Any) -> Any:
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["Expected a JSON object."]}, code="invalid"
            )
        known = {name for name, field in self.fields.items() if not field.read_only}  # type: ignore[attr-defined]
        unknown = sorted(set(data) - known)
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)  # type: ignore[misc]


class StrictSerializer(StrictSerializerMixin, serializers.Serializer):
    pass


class StrictModelSerializer(StrictSerializerMixin, serializers.ModelSerializer):
    pass


class OptionalSlashRouter(SimpleRouter):
    """Routes that answer with or without the trailing slash (no redirect that drops a POST body)."""

    def __init__(self) -> None:
        super().__init__()
        self.trailing_slash = "/?"


# Read-only fields whose values the view passes in the serializer context, not on the instance: a secret
# that exists only in the response that creates it (``once_fields``). A comment, not a docstring: the
# OpenAPI schema would show a docstring as the description of every serializer using it.
class ShownOnceMixin:
    once_fields: tuple[str, ...] = ()
    context: dict[str, Any]

    def to_representation(self, instance: Any) -> Any:
        data = super().to_representation(instance)  # type: ignore[misc]
        for name in self.once_fields:
            data[name] = self.context.get(name)
        return data
