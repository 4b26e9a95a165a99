"""``POST /hooks/{public_id}``: the public webhook endpoint (no API key; the trigger's own auth)."""

from __future__ import annotations

import logging
import time
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from agents.runs import execution
from agents.runs.models import Run
from agents.runs.services import run_enqueue_now, run_wait
from agents.triggers import services as trigger_services
from agents.triggers.inbound_email import email_receive
from agents.triggers.models import Trigger
from billing.errors import QuotaExceeded
from falcon import counters, jsonlimits, metrics, signing
from falcon.admission import Admission
from falcon.errors import error_response, json_error

logger = logging.getLogger(__name__)
REFUSALS_PER_MINUTE = 60
HIDDEN_HEADERS = {"authorization", "cookie", "webhook-signature", "x-hub-signature-256", "x-hub-signature"}
# Deliveries verifying, starting (or executing inline) their runs at once in this process; the rest of
# gunicorn's threads wait their turn, or wait for a synchronous run outside the bound.
ADMISSION = Admission(settings.FALCON_WEBHOOK_ACTIVE)


def _parse(request: HttpRequest) -> tuple[Any, JsonResponse | None]:
    content_type = (request.content_type or "").lower()
    raw = request.body
    if content_type == "application/json":
        try:
            return jsonlimits.loads(raw or b"null"), None
        except ValueError:
            return None, json_error(400, "malformed_body", "The body is not valid JSON.")
    if content_type == "application/x-www-form-urlencoded":
        return {
            k: v[0] if len(v) == 1 else v for k, v in parse_qs(raw.decode(errors="replace")).items()
        }, None
    if content_type == "text/plain":
        return raw.decode(errors="replace"), None
    return None, json_error(415, "unsupported_media_type", "Send application/json, form data or text/plain.")


@csrf_exempt
@require_POST
def webhook_receive(request: HttpRequest, public_id: str) -> JsonResponse:
    timer = metrics.timer()
    with ADMISSION.admitted():
        response = _webhook_receive(request, public_id)
    outcome = str(response.status_code)  # bounded: the few statuses this view answers
    metrics.WEBHOOK_LATENCY.labels(outcome).observe(timer.seconds())
    metrics.WEBHOOK_REQUESTS.labels(outcome).inc()
    return response


def _webhook_receive(request: HttpRequest, public_id: str) -> JsonResponse:
    found = trigger_services.trigger_for_delivery(public_id, Trigger.Kind.WEBHOOK)
    if found is None:
        return json_error(404, "not_found", "Not found.")  # unknown and disabled look the same
    trigger, plan = found
    headers = {k.lower(): v for k, v in request.headers.items()}
    config = trigger.config
    auth = config.get("auth", "standard")
    if auth != "none":
        # Refusals are budgeted before any verification work: a flood of bad signatures costs a
        # cache increment each, and is stored as one aggregated row a minute.
        failures = f"falcon:hook-refused:{trigger.pk}:{int(time.time() // 60)}"
        if (cache.get(failures) or 0) >= REFUSALS_PER_MINUTE:
            return json_error(429, "rate_limited", "Too many unauthenticated deliveries this minute.")
        secrets_now = trigger_services.signing_secrets(trigger)
        if auth == "standard":
            problem = signing.verify_standard(secrets_now, headers, request.body)
        elif auth == "github":
            problem = signing.verify_github(secrets_now, headers, request.body)
        else:
            problem = signing.verify_header(secrets_now, headers.get(config["header_name"].lower(), ""))
        if problem:
            counters.hit(failures, 120)
            trigger_services.trigger_refusal_record(trigger=trigger, code="bad_signature", message=problem)
            return json_error(401, "bad_signature", f"The webhook is not authenticated: {problem}.")
    window = int(time.time() // 60)
    key = f"falcon:hook-rate:{trigger.pk}:{window}"
    if counters.hit(key, 120) > int(config.get("rate_limit_per_minute", 600)):
        return json_error(429, "rate_limited", "Too many deliveries to this trigger this minute.")
    body, failure = _parse(request)
    if failure is not None:
        return failure
    delivery_id = headers.get("webhook-id", "") or headers.get("x-github-delivery", "")
    if auth == "standard":
        # The signed webhook-id is the message's identity: an unsigned Idempotency-Key header cannot
        # turn one captured message into several runs.
        idempotency: str | None = f"webhook-id:{delivery_id}"
    else:
        idempotency = headers.get("idempotency-key") or (f"webhook-id:{delivery_id}" if delivery_id else None)
    event = {
        "body": body,
        "query": dict(request.GET.items()),
        "headers": {k: v for k, v in headers.items() if k not in HIDDEN_HEADERS},
    }
    version = trigger.agent.published_version
    inline = trigger_services.inline_eligible(version)
    wait = float(config.get("sync_wait_s") or 0)
    nearby = bool(wait) and not inline and trigger_services.sync_executable(version)
    try:
        # A short pure workflow runs inline: its steps and outcome commit with the delivery itself.
        record, run = trigger_services.trigger_fire(
            trigger=trigger,
            event=event,
            delivery_id=delivery_id,
            idempotency_key=f"trigger:{trigger.pk}:{idempotency}" if idempotency else None,
            inline=inline,
            enqueue=not nearby,
            plan=plan,
        )
    except QuotaExceeded as exc:
        return error_response(exc)
    if run is None:
        return json_error(422, record.code, record.message)
    if nearby and run.status == Run.Status.QUEUED:
        # The caller waits anyway: this process executes the run (no queue hop, no second process);
        # past sync_wait_s it answers 202 and the run goes on here. Busy: the workers take it.
        started = time.monotonic()
        future = execution.nearby.submit(run)
        if future is None:
            run_enqueue_now(run.pk)
        else:
            try:
                with ADMISSION.stepped_out():
                    executed = future.result(timeout=wait)
                if executed.status in Run.FINISHED:  # answered with what was stored, not read back
                    return _sync_answer(run.pk, executed.status, executed.output, executed.error)
            except FutureTimeout:
                pass  # still running here: answered below as any run still going
            except Exception:  # the run is the sweeper's to recover; the caller gets its state
                logger.exception("Run %s failed to execute in the web process", run.pk)
        wait = max(0.0, wait - (time.monotonic() - started))
    if config.get("sync_wait_s"):
        if run.status in Run.FINISHED:
            run = Run.objects.get(pk=run.pk)
        else:
            with ADMISSION.stepped_out():
                run = run_wait(run.pk, wait)
        if run.status in Run.FINISHED:
            return _sync_answer(run.pk, run.status, run.output, run.error)
    return JsonResponse({"run_id": str(run.pk), "status": run.status}, status=202)


def _sync_answer(run_id: Any, status: str, output: Any, error: Any) -> JsonResponse:
    return JsonResponse(
        {"run_id": str(run_id), "status": status, "output": output, "error": error}, status=200
    )


@csrf_exempt
@require_POST
def email_receive_http(request: HttpRequest, public_id: str) -> JsonResponse:
    """A raw RFC 822 message, for providers that forward mail over HTTP (shared-secret header)."""
    trigger = Trigger.objects.filter(public_id=public_id, kind=Trigger.Kind.EMAIL, enabled=True).first()
    if trigger is None:
        return json_error(404, "not_found", "Not found.")
    offered = request.headers.get("X-Falcon-Email-Secret", "")
    problem = signing.verify_header(trigger_services.signing_secrets(trigger), offered)
    if problem:
        return json_error(401, "bad_signature", f"The delivery is not authenticated: {problem}.")
    if not request.body:
        return json_error(400, "empty_message", "The body must be the raw message (RFC 822).")
    try:
        record, run = email_receive(trigger, request.body)
    except QuotaExceeded as exc:
        return error_response(exc)
    if run is None:
        return json_error(422, record.code, record.message)
    return JsonResponse({"run_id": str(run.pk), "status": "queued"}, status=202)
