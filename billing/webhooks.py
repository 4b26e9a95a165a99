"""Stripe's webhook endpoint: verify the raw body, store the event, answer fast; a task applies it."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from billing.services import stripe_event_receive
from falcon.errors import FalconError, error_response


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    try:
        event, new = stripe_event_receive(
            payload=request.body, signature=request.headers.get("Stripe-Signature", "")
        )
    except FalconError as exc:
        return error_response(exc)
    return JsonResponse({"received": True, "duplicate": not new, "id": event.event_id}, status=200)
