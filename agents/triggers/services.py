"""Triggers: lifecycle (audited), signing secrets, webhook verification, schedules and firing."""

from __future__ import annotations

import itertools
import json
import secrets
import time
import zoneinfo
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from celery.schedules import crontab_parser
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from agents.engine import templates
from agents.engine.spec import PURE_STEP_TYPES, spec_for_version
from agents.errors import RunInputInvalid
from agents.notifications.services import notify, people_with
from agents.runs.execution import run_execute
from agents.runs.models import Run
from agents.runs.services import run_start
from agents.triggers.models import Trigger, TriggerEvent
from agents.workflows.models import Agent, AgentVersion
from billing.errors import PlanLimitReached, QuotaExceeded
from billing.models import Subscription
from billing.plans import Metric
from billing.quotas import (
    SUBSCRIPTION_FIELDS,
    Entitlement,
    entitlement,
    entitlement_of,
    plan_limit,
    quota_consume,
    quota_count_check,
    quota_over_limit_check,
)
from connectors.crypto import secret_decrypt, secret_encrypt
from falcon import signing, sql
from falcon.errors import Conflict, InvalidInput
from tenants.audit import Actor, audit_record
from tenants.models import User

WEBHOOK_AUTH = ("standard", "github", "header", "none")
SCHEDULE_TASK = "agents.tasks.trigger_fire_task"
DEFAULT_MAPPING = {"webhook": "{{ event.body }}", "schedule": {}, "email": "{{ event }}"}
SECRET_OVERLAP = timedelta(hours=24)


# --- secrets ---------------------------------------------------------------------------------------------


def _seal(trigger: Trigger, plaintext: str, index: int) -> str:
    return secret_encrypt(
        tenant_id=trigger.tenant_id, connector_id=trigger.pk, field=f"signing-{index}", plaintext=plaintext
    )


def signing_secrets(trigger: Trigger) -> list[str]:
    """The trigger's signing secrets still valid now (the new one, and old ones in their overlap)."""
    now = timezone.now()
    valid = []
    for item in trigger.secrets:
        if item.get("expires_at") and datetime.fromisoformat(item["expires_at"]) <= now:
            continue
        cache_key = f"{trigger.pk}:{item['index']}:{item['token']}"
        cached = _SECRETS.get(cache_key)
        if cached is None or cached[0] < time.monotonic():
            plaintext = secret_decrypt(
                tenant_id=trigger.tenant_id,
                connector_id=trigger.pk,
                field=f"signing-{item['index']}",
                token=item["token"],
            )
            if len(_SECRETS) >= SECRET_CACHE_SIZE:
                _SECRETS.clear()
            cached = _SECRETS[cache_key] = (time.monotonic() + SECRET_CACHE_TTL_S, plaintext)
        valid.append(cached[1])
    return valid


# Decrypted signing secrets, by their ciphertext: a webhook delivery verifies without reading the
# tenant's data key and unwrapping it. Keyed by the token itself, so a rotated secret is a new entry
# (invalidation by construction); expiry is checked above on every delivery; entries live a minute.
SECRET_CACHE_TTL_S = 60.0
SECRET_CACHE_SIZE = 4096
_SECRETS: dict[str, tuple[float, str]] = {}


def _add_secret(trigger: Trigger) -> str:
    plaintext = signing.whsec_new()
    index = max((item["index"] for item in trigger.secrets), default=0) + 1
    now = timezone.now()
    kept = []
    for item in trigger.secrets:
        expires = item.get("expires_at")
        if not expires:
            item = {**item, "expires_at": (now + SECRET_OVERLAP).isoformat()}
        if datetime.fromisoformat(item["expires_at"]) > now:
            kept.append(item)
    trigger.secrets = [
        {
            "index": index,
            "token": _seal(trigger, plaintext, index),
            "created_at": now.isoformat(),
            "expires_at": None,
        },
        *kept,
    ]
    return plaintext


# --- validation and schedules ----------------------------------------------------------------------------


def _cron_min_gap_s(minute: str, hour: str) -> int:
    """The shortest time between two firings of a cron expression (its densest day decides)."""
    minutes = sorted(crontab_parser(60).parse(minute))
    hours = sorted(crontab_parser(24).parse(hour))
    times = [h * 60 + m for h in hours for m in minutes]
    gaps = [b - a for a, b in itertools.pairwise(times)] + [times[0] + 24 * 60 - times[-1]]
    return min(gaps) * 60


def _interval_check(tenant_id: Any, seconds: int, field: str) -> None:
    minimum = plan_limit(tenant_id, Metric.MIN_SCHEDULE_INTERVAL_S)
    if seconds < minimum:
        plan = entitlement(tenant_id).plan
        raise PlanLimitReached(
            Metric.MIN_SCHEDULE_INTERVAL_S.value,
            minimum,
            seconds,
            message=f"The {plan.name} plan's shortest schedule interval is {minimum} s; this one fires "
            f"every {seconds} s.",
            field=field,
        )


def _validate_config(kind: str, config: dict[str, Any], tenant_id: Any) -> dict[str, Any]:
    if kind == Trigger.Kind.WEBHOOK:
        auth = config.get("auth", "standard")
        if auth not in WEBHOOK_AUTH:
            raise InvalidInput(f"auth must be one of {', '.join(WEBHOOK_AUTH)}.", field="config.auth")
        if auth == "none" and not config.get("allow_unsigned"):
            raise InvalidInput(
                "Unsigned webhooks must be allowed explicitly (allow_unsigned: true).",
                code="unsigned_not_allowed",
                field="config.allow_unsigned",
            )
        wait = config.get("sync_wait_s", 0)
        if not isinstance(wait, int | float) or not 0 <= wait <= 30:
            raise InvalidInput("sync_wait_s must be between 0 and 30.", field="config.sync_wait_s")
        return {
            "auth": auth,
            "header_name": str(config.get("header_name") or "X-Webhook-Secret"),
            "allow_unsigned": bool(config.get("allow_unsigned")),
            "sync_wait_s": wait,
            "rate_limit_per_minute": int(config.get("rate_limit_per_minute") or 600),
        }
    if kind == Trigger.Kind.SCHEDULE:
        overlap = config.get("overlap", "skip")
        if overlap not in ("skip", "queue"):
            raise InvalidInput("overlap must be skip or queue.", field="config.overlap")
        tz = str(config.get("timezone") or "UTC")
        try:
            zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
            raise InvalidInput(f"Unknown time zone {tz!r}.", field="config.timezone") from exc
        if "cron" in config:
            parts = str(config["cron"]).split()
            if len(parts) != 5:
                raise InvalidInput(
                    "cron needs 5 fields: minute hour day-of-month month day-of-week.", field="config.cron"
                )
            try:
                gap = _cron_min_gap_s(parts[0], parts[1])
                crontab_parser(31, 1).parse(parts[2])
                crontab_parser(12, 1).parse(parts[3])
                crontab_parser(7).parse(parts[4])
            except (ValueError, IndexError) as exc:
                raise InvalidInput(f"Invalid cron expression: {exc}", field="config.cron") from exc
            _interval_check(tenant_id, gap, "config.cron")
            return {"cron": " ".join(parts), "timezone": tz, "overlap": overlap}
        interval = config.get("interval_s")
        if not isinstance(interval, int) or isinstance(interval, bool):
            raise InvalidInput("Give a cron expression or interval_s (seconds).", field="config.interval_s")
        if interval < 1:
            raise InvalidInput("interval_s must be at least 1.", field="config.interval_s")
        _interval_check(tenant_id, interval, "config.interval_s")
        return {"interval_s": interval, "overlap": overlap}
    senders = config.get("allowed_senders") or []
    if not isinstance(senders, list) or not all(isinstance(x, str) and "@" in x for x in senders):
        raise InvalidInput(
            "allowed_senders is a list of addresses or @domains.", field="config.allowed_senders"
        )
    return {
        "allowed_senders": senders,
        "store_attachments": bool(config.get("store_attachments")),
        "max_attachment_bytes": int(config.get("max_attachment_bytes") or 1024 * 1024),
    }


def _sync_schedule(trigger: Trigger) -> None:
    """Keeps the django-celery-beat row in step with the trigger (same transaction)."""
    if trigger.kind != Trigger.Kind.SCHEDULE:
        return
    config = trigger.config
    fields: dict[str, Any] = {"interval": None, "crontab": None}
    if "cron" in config:
        minute, hour, day_of_month, month_of_year, day_of_week = config["cron"].split()
        fields["crontab"], _ = CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
            timezone=config.get("timezone", "UTC"),
        )
    else:
        fields["interval"], _ = IntervalSchedule.objects.get_or_create(
            every=config["interval_s"], period=IntervalSchedule.SECONDS
        )
    values = {
        **fields,
        "task": SCHEDULE_TASK,
        "kwargs": json.dumps({"trigger_id": str(trigger.pk)}),
        "enabled": trigger.enabled,
        "description": f"Falcon trigger {trigger.name} ({trigger.tenant_id})",
    }
    if trigger.periodic_task_id:
        PeriodicTask.objects.filter(pk=trigger.periodic_task_id).update(**values)
        PeriodicTask.objects.get(pk=trigger.periodic_task_id).save()  # bumps beat's change marker
    else:
        trigger.periodic_task = PeriodicTask.objects.create(name=f"falcon-trigger-{trigger.pk}", **values)
        trigger.save(update_fields=["periodic_task"])


def _check_mapping(mapping: Any) -> None:
    problems = templates.parse_errors(mapping)
    if problems:
        raise InvalidInput(problems[0], code="template_syntax", field="input_mapping")


# --- lifecycle -------------------------------------------------------------------------------------------


def _audit_view(trigger: Trigger) -> dict[str, Any]:
    return {
        "name": trigger.name,
        "kind": trigger.kind,
        "agent": trigger.agent.name,
        "enabled": trigger.enabled,
        "config": trigger.config,
        "input_mapping": trigger.input_mapping,
    }


@transaction.atomic
def trigger_create(
    *,
    agent: Agent,
    name: str,
    kind: str,
    config: dict[str, Any],
    input_mapping: Any,
    enabled: bool,
    actor: Actor,
    created_by: User | None,
) -> tuple[Trigger, str | None]:
    """A new trigger, and for webhooks its signing secret (returned once)."""
    if kind not in Trigger.Kind.values:
        raise InvalidInput(f"kind must be one of {', '.join(Trigger.Kind.values)}.", field="kind")
    if enabled and agent.published_version_id is None:
        raise Conflict(
            "The agent has no published version; publish one before enabling a trigger.",
            code="agent_not_published",
        )
    mapping = DEFAULT_MAPPING[kind] if input_mapping is None else input_mapping
    _check_mapping(mapping)
    quota_count_check(agent.tenant_id, Metric.TRIGGERS)
    trigger = Trigger(
        tenant_id=agent.tenant_id,
        agent=agent,
        name=name.strip(),
        kind=kind,
        enabled=enabled,
        config=_validate_config(kind, config, agent.tenant_id),
        input_mapping=mapping,
        created_by=created_by,
        # E-mail addresses are case-insensitive: those triggers get a lowercase id.
        public_id=("em" + secrets.token_hex(16))
        if kind == Trigger.Kind.EMAIL
        else "trg_" + secrets.token_urlsafe(18),
    )
    secret = _add_secret(trigger) if kind in (Trigger.Kind.WEBHOOK, Trigger.Kind.EMAIL) else None
    try:
        with transaction.atomic():
            trigger.save(force_insert=True)
    except IntegrityError as exc:
        raise Conflict(f"A trigger named {name!r} exists.", code="name_taken", field="name") from exc
    _sync_schedule(trigger)
    audit_record(
        tenant=trigger.tenant_id,
        actor=actor,
        action="trigger.created",
        target_type="trigger",
        target_id=trigger.pk,
        after=_audit_view(trigger),
    )
    return trigger, secret


@transaction.atomic
def trigger_update(
    *,
    trigger: Trigger,
    actor: Actor,
    name: str | None = None,
    config: dict[str, Any] | None = None,
    input_mapping: Any = ...,
    enabled: bool | None = None,
) -> Trigger:
    quota_over_limit_check(trigger.tenant_id, Metric.TRIGGERS)
    trigger = Trigger.objects.select_for_update().select_related("agent").get(pk=trigger.pk)
    before = _audit_view(trigger)
    if name is not None:
        trigger.name = name.strip()
    if config is not None:
        base = dict(trigger.config)
        if "cron" in config or "interval_s" in config:  # a new timing replaces the old one
            base.pop("cron", None)
            base.pop("interval_s", None)
            if "interval_s" in config:
                base.pop("timezone", None)
        trigger.config = _validate_config(trigger.kind, {**base, **config}, trigger.tenant_id)
    if input_mapping is not ...:
        _check_mapping(input_mapping)
        trigger.input_mapping = input_mapping
    if enabled is not None:
        if enabled and trigger.agent.published_version_id is None:
            raise Conflict(
                "The agent has no published version; publish one before enabling a trigger.",
                code="agent_not_published",
            )
        if enabled and not trigger.enabled and config is None:
            # Re-enabling (after a downgrade paused it, say) meets the plan's rules of today.
            trigger.config = _validate_config(trigger.kind, trigger.config, trigger.tenant_id)
        trigger.enabled = enabled
        if enabled:
            trigger.disabled_reason = ""
    trigger.updated_at = timezone.now()
    try:
        with transaction.atomic():
            trigger.save()
    except IntegrityError as exc:
        raise Conflict(f"A trigger named {name!r} exists.", code="name_taken", field="name") from exc
    _sync_schedule(trigger)
    action = (
        "trigger.updated"
        if enabled is None or enabled == before["enabled"]
        else ("trigger.enabled" if enabled else "trigger.disabled")
    )
    audit_record(
        tenant=trigger.tenant_id,
        actor=actor,
        action=action,
        target_type="trigger",
        target_id=trigger.pk,
        before=before,
        after=_audit_view(trigger),
    )
    return trigger


@transaction.atomic
def trigger_rotate_secret(*, trigger: Trigger, actor: Actor) -> str:
    """A new signing secret; the previous ones keep verifying for 24 h (overlap for senders to switch)."""
    trigger = Trigger.objects.select_for_update().get(pk=trigger.pk)
    if trigger.kind == Trigger.Kind.SCHEDULE:
        raise Conflict("Schedule triggers have no secret.", code="no_secret")
    secret = _add_secret(trigger)
    trigger.save(update_fields=["secrets"])
    audit_record(
        tenant=trigger.tenant_id,
        actor=actor,
        action="trigger.secret_rotated",
        target_type="trigger",
        target_id=trigger.pk,
        after={"overlap_hours": SECRET_OVERLAP.total_seconds() / 3600},
    )
    return secret


@transaction.atomic
def trigger_delete(*, trigger: Trigger, actor: Actor) -> None:
    trigger = Trigger.objects.select_for_update().select_related("agent").get(pk=trigger.pk)
    audit_record(
        tenant=trigger.tenant_id,
        actor=actor,
        action="trigger.deleted",
        target_type="trigger",
        target_id=trigger.pk,
        before=_audit_view(trigger),
    )
    periodic_task_id = trigger.periodic_task_id
    trigger.delete()
    if periodic_task_id:
        PeriodicTask.objects.filter(pk=periodic_task_id).delete()


def triggers_pause(*, tenant_id: Any, actor: Actor, reason: str) -> int:
    """Disables every enabled trigger of a tenant on the system's behalf (a downgrade), saying why."""
    paused = 0
    for trigger in (
        Trigger.objects.select_for_update().select_related("agent").filter(tenant_id=tenant_id, enabled=True)
    ):
        before = _audit_view(trigger)
        trigger.enabled = False
        trigger.disabled_reason = reason[:300]
        trigger.updated_at = timezone.now()
        trigger.save(update_fields=["enabled", "disabled_reason", "updated_at"])
        _sync_schedule(trigger)
        audit_record(
            tenant=tenant_id,
            actor=actor,
            action="trigger.disabled",
            target_type="trigger",
            target_id=trigger.pk,
            before=before,
            after={**_audit_view(trigger), "reason": reason},
        )
        paused += 1
    if paused:
        notify(
            tenant_id=tenant_id,
            event="trigger.disabled",
            subject=f"{paused} trigger(s) paused",
            body=f"Falcon paused {paused} trigger(s): {reason}.",
            recipients=people_with(tenant_id, ("owner", "admin")),
            data={"count": paused, "reason": reason},
        )
    return paused


# --- what the API shows ----------------------------------------------------------------------------------


def trigger_url(trigger: Trigger) -> str | None:
    """Where a webhook (or e-mail over HTTP) trigger receives deliveries."""
    if trigger.kind == Trigger.Kind.EMAIL:
        return f"{settings.FALCON_BASE_URL}/hooks/email/{trigger.public_id}"
    return (
        f"{settings.FALCON_BASE_URL}/hooks/{trigger.public_id}"
        if trigger.kind == Trigger.Kind.WEBHOOK
        else None
    )


def trigger_address(trigger: Trigger) -> str | None:
    """The e-mail address of an e-mail trigger."""
    if trigger.kind != Trigger.Kind.EMAIL:
        return None
    return f"{trigger.public_id}@{settings.FALCON_INBOUND_EMAIL_DOMAIN}"


def _names(model: Any, *leave_out: str) -> tuple[str, ...]:
    return tuple(f.name for f in model._meta.concrete_fields if f.name not in leave_out)


_TRIGGER = _names(Trigger)
_AGENT = _names(Agent)
_VERSION = _names(AgentVersion, "definition", "tests")


_SUBSCRIPTION = ("id", *SUBSCRIPTION_FIELDS)


def trigger_for_delivery(public_id: str, kind: str) -> tuple[Trigger, Entitlement] | None:
    """The enabled trigger behind a public address, with its agent and published version (their
    definition left to load on demand: the parsed spec is cached per version), and its tenant's
    plan now (the run's start needs it). One hand-written joined statement: every webhook delivery
    starts here."""
    found = sql.select_models(
        [
            (Trigger, "t", _TRIGGER),
            (Agent, "a", _AGENT),
            (AgentVersion, "v", _VERSION),
            (Subscription, "s", _SUBSCRIPTION),
        ],
        f"{sql.table(Trigger)} t JOIN {sql.table(Agent)} a ON a.id = t.agent_id "
        f"LEFT JOIN {sql.table(AgentVersion)} v ON v.id = a.published_version_id "
        f"LEFT JOIN {sql.table(Subscription)} s ON s.{sql.column(Subscription, 'tenant')} = t.tenant_id",
        "t.public_id = %s AND t.kind = %s AND t.enabled = %s",
        [public_id, kind, True],
    )
    if found is None:
        return None
    trigger, agent, version, subscription = found
    assert isinstance(trigger, Trigger)
    assert isinstance(agent, Agent)
    agent.published_version = version  # type: ignore[assignment]
    trigger.agent = agent
    # No subscription row (the join found none): the Free plan.
    row = None if subscription is None else [getattr(subscription, name) for name in SUBSCRIPTION_FIELDS]
    return trigger, entitlement_of(trigger.tenant_id, row)


# --- firing ----------------------------------------------------------------------------------------------


def trigger_fire(
    *,
    trigger: Trigger,
    event: dict[str, Any],
    delivery_id: str = "",
    idempotency_key: str | None = None,
    enqueue: bool = True,
    inline: bool = False,
    plan: Entitlement | None = None,
) -> tuple[TriggerEvent, Run | None]:
    """Maps the event to run input, starts the run (or records why not). ``plan``: the tenant's plan
    as the caller just read it (``trigger_for_delivery``), not read again.

    ``inline``: the run (a short pure workflow: ``inline_eligible``) is executed here, within the
    caller's transaction, and returned finished; at the tenant's concurrency limit it is left queued.
    """
    actor = Actor.system(f"trigger:{trigger.name}")

    def refuse(code: str, message: str) -> tuple[TriggerEvent, None]:
        return TriggerEvent.objects.create(
            tenant_id=trigger.tenant_id,
            trigger=trigger,
            accepted=False,
            code=code,
            message=message[:500],
            delivery_id=delivery_id[:200],
        ), None

    cached = Trigger.agent.is_cached(trigger) and Agent.published_version.is_cached(trigger.agent)
    agent = (
        trigger.agent
        if cached
        else Agent.objects.select_related("published_version").get(pk=trigger.agent_id)
    )
    try:
        run_input = templates.render(trigger.input_mapping, {"event": event})
    except templates.TemplateError as exc:
        code = "input_mapping_failed" if exc.code == "template_error" else exc.code
        return refuse(code, f"the input mapping failed: {exc}")
    try:
        # The rows every delivery shares (the run counter, the trigger's stamp) are written last,
        # just before the commit: their row locks are held for one round trip, not while the run
        # executes (inline) or the delivery's record is written, so concurrent deliveries of one
        # tenant queue behind each other as briefly as they can.
        with transaction.atomic():
            run, new = run_start(
                agent=agent,
                input=run_input,
                actor=actor,
                trigger=trigger.kind,
                trigger_ref=str(trigger.pk),
                idempotency_key=idempotency_key,
                enqueue=enqueue and not inline,
                claim=inline,
                charge=False,  # below, last
                savepoint=False,  # a quota refusal is recorded below, after this block rolls back
                plan=plan,
            )
            if inline and new and run.status == Run.Status.RUNNING:
                run.status = run_execute(run.pk, run=run) or Run.Status.QUEUED
            accepted = _accepted(trigger, run, delivery_id)
            if new:
                quota_consume(run.tenant_id, Metric.RUNS, ent=run.started_with)
    except RunInputInvalid as exc:
        return refuse("invalid_input", exc.message)
    except QuotaExceeded as exc:
        refuse(exc.code, exc.message)
        raise  # callers answer it in their own protocol (HTTP 429, SMTP 452, a skipped firing)
    except Conflict as exc:
        return refuse(exc.code, exc.message)
    return accepted, run


STAMP_EVERY = timedelta(seconds=1)


def _accepted(trigger: Trigger, run: Run, delivery_id: str) -> TriggerEvent:
    """The accepted delivery's event row, and the trigger's "last fired" stamp (at most once a second:
    every delivery would otherwise update, and lock, that one row)."""
    event = TriggerEvent(
        tenant_id=trigger.tenant_id, trigger=trigger, accepted=True, run=run, delivery_id=delivery_id[:200]
    )
    sql.insert([event])
    event._state.adding = False
    if trigger.last_fired_at is None or event.received_at - trigger.last_fired_at >= STAMP_EVERY:
        sql.update(
            Trigger,
            {"last_fired_at": event.received_at},
            "id = %s AND (last_fired_at IS NULL OR last_fired_at < %s)",
            [sql.param(Trigger, "id", trigger.pk), sql.param(Trigger, "last_fired_at", event.received_at)],
        )
    return event


REFUSAL_WINDOW = timedelta(minutes=1)


def trigger_refusal_record(*, trigger: Trigger, code: str, message: str) -> None:
    """A refused delivery: refusals of one kind within a minute add to one row instead of a row each."""
    recent = timezone.now() - REFUSAL_WINDOW
    latest = (
        TriggerEvent.objects.filter(trigger=trigger, accepted=False, code=code, received_at__gte=recent)
        .order_by("-received_at")
        .values_list("pk", flat=True)
        .first()
    )
    if latest is not None:
        TriggerEvent.objects.filter(pk=latest).update(count=F("count") + 1, message=message[:500])
    else:
        TriggerEvent.objects.create(
            tenant_id=trigger.tenant_id, trigger=trigger, accepted=False, code=code, message=message[:500]
        )


def inline_eligible(version: AgentVersion | None) -> bool:
    """Whether a webhook may execute this version in the request: a short workflow of pure steps
    (transforms and branches: no I/O, no waits), which finishes in milliseconds."""
    limit = settings.FALCON_WEBHOOK_INLINE_MAX_STEPS
    if version is None or limit <= 0:
        return False
    spec = spec_for_version(version.pk, lambda: version.definition)
    return len(spec.steps) <= limit and all(s.type in PURE_STEP_TYPES for s in spec.steps)


SYNC_STEP_TYPES = PURE_STEP_TYPES | {"llm"}


def sync_executable(version: AgentVersion | None) -> bool:
    """Whether a synchronous webhook (``sync_wait_s``) executes this version in the web process that
    waits for it: a short workflow of pure and ``llm`` steps (no connector, wait or approval), so
    the caller is not answered one queue hop and one worker later."""
    limit = settings.FALCON_WEBHOOK_INLINE_MAX_STEPS
    if version is None or limit <= 0:
        return False
    spec = spec_for_version(version.pk, lambda: version.definition)
    return len(spec.steps) <= limit and all(s.type in SYNC_STEP_TYPES for s in spec.steps)


def trigger_fire_scheduled(trigger_id: str) -> str:
    """What beat runs for a schedule trigger: honours the overlap policy, then fires."""
    trigger = Trigger.objects.filter(pk=trigger_id, enabled=True).first()
    if trigger is None:
        return "gone or disabled"
    # Claim this slot: beat may deliver a slot twice (its last-run time is saved lazily, and a second
    # beat process would fire too); a firing within half an interval of the last one is the same slot.
    now = timezone.now()
    half = timedelta(seconds=float(trigger.config.get("interval_s", 60)) / 2)
    claimed = (
        Trigger.objects.filter(pk=trigger.pk)
        .filter(Q(last_fired_at__isnull=True) | Q(last_fired_at__lt=now - half))
        .update(last_fired_at=now)
    )
    if not claimed:
        return "duplicate"
    if trigger.config.get("overlap", "skip") == "skip":
        busy = Run.objects.filter(
            trigger_ref=str(trigger.pk),
            status__in=[Run.Status.QUEUED, Run.Status.RUNNING, Run.Status.WAITING],
        ).exists()
        if busy:
            TriggerEvent.objects.create(
                tenant_id=trigger.tenant_id,
                trigger=trigger,
                accepted=False,
                code="previous_run_active",
                message="skipped: the previous run is still going",
            )
            return "skipped"
    event = {"scheduled_at": timezone.now().isoformat(), "trigger": trigger.name}
    try:
        record, _ = trigger_fire(trigger=trigger, event=event)
    except QuotaExceeded:
        return "quota_exceeded"
    return "fired" if record.accepted else record.code


# --- what lower apps act on (registered in AgentsConfig.ready) --------------------------------------------


def trigger_secrets_rekey(tenant_id: Any, reseal: Callable[[Any, str, str], str]) -> int:
    """Re-encrypts every signing secret of a tenant's triggers (data key rotation)."""
    count = 0
    for trigger in Trigger.objects.select_for_update().filter(tenant_id=tenant_id).exclude(secrets=[]):
        trigger.secrets = [
            {**item, "token": reseal(trigger.pk, f"signing-{item['index']}", item["token"])}
            for item in trigger.secrets
        ]
        trigger.save(update_fields=["secrets"])
        count += len(trigger.secrets)
    return count


def trigger_events_tenant_ids() -> list[Any]:
    return list(TriggerEvent.objects.values_list("tenant_id", flat=True).distinct())


def trigger_events_prune(tenant_id: Any, cutoff: datetime) -> dict[str, int]:
    """Deletes a tenant's delivery records received before ``cutoff`` (retention)."""
    return {"events": TriggerEvent.objects.filter(tenant_id=tenant_id, received_at__lt=cutoff).delete()[0]}


def triggers_pause_for_plan(tenant_id: Any, actor: Actor, reason: str) -> str:
    """Billing's downgrade hook: pauses every enabled trigger and says how many."""
    return f"{triggers_pause(tenant_id=tenant_id, actor=actor, reason=reason)} trigger(s) were paused."


def schedule_preview(
    config: dict[str, Any], *, count: int = 5, now: datetime | None = None
) -> list[datetime]:
    """The next ``count`` firings of a schedule config (validate it first), in its time zone.

    Cron fields are read with Celery's parser (what beat runs); a day matches when both its day of
    the month and its day of the week do, as in Celery.
    """
    zone = zoneinfo.ZoneInfo(str(config.get("timezone") or "UTC"))
    start = (now or timezone.now()).astimezone(zone)
    if "interval_s" in config:
        step = timedelta(seconds=int(config["interval_s"]))
        return [start + step * k for k in range(1, count + 1)]
    minute, hour, dom, month, dow = str(config["cron"]).split()
    minutes = sorted(crontab_parser(60).parse(minute))
    hours = sorted(crontab_parser(24).parse(hour))
    days = crontab_parser(31, 1).parse(dom)
    months = crontab_parser(12, 1).parse(month)
    weekdays = crontab_parser(7).parse(dow)
    found: list[datetime] = []
    day = start.date()
    for _ in range(366 * 5):  # a valid cron fires within a few years (29 February)
        if day.day in days and day.month in months and (day.isoweekday() % 7) in weekdays:
            for h, m in itertools.product(hours, minutes):
                moment = datetime(day.year, day.month, day.day, h, m, tzinfo=zone)
                if moment > start:
                    found.append(moment)
                    if len(found) == count:
                        return found
        day += timedelta(days=1)
    return found


def schedule_config_check(config: dict[str, Any], tenant_id: Any) -> dict[str, Any]:
    """A schedule config as it would be stored (raises ``InvalidInput`` at its field)."""
    return _validate_config(Trigger.Kind.SCHEDULE, config, tenant_id)
