"""The one entry point to check or consume a quota.

Metered quotas (runs, tokens, spend) live in ``UsageCounter`` rows, one per tenant, metric, scope and
usage period, consumed with one conditional ``UPDATE ... SET used = used + n WHERE used + n <= limit``:
PostgreSQL re-checks the condition against the committed row after a concurrent update, so racing
requests can never overrun a limit. LLM tokens and spend are *reserved* (an estimate, consumed the same
way) before a call and *settled* with the real figure after it. Count limits (agents, members...)
are checked while the tenant row is locked, so two creations cannot both take the last slot.
"""

from __future__ import annotations

import calendar
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from enum import Enum
from functools import lru_cache
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from billing.alerts import usage_alert_record
from billing.errors import PlanLimitReached, QuotaExceeded, json_value
from billing.models import AgentSpendCap, Subscription, UsageCounter
from billing.plans import FREE, METERED, MICRO, PLANS, USD_METRICS, Feature, Metric, Plan, plan_get
from billing.registry import object_count
from falcon import metrics, sql
from tenants.models import Tenant, tenant_lock
from tenants.selectors import tenant_founder

logger = logging.getLogger(__name__)

ALERT_THRESHOLDS = (80, 100)
CALENDAR_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)


def usd_to_micro(amount: Decimal | float) -> int:
    return int((Decimal(str(amount)) * MICRO).to_integral_value(rounding=ROUND_CEILING))


def micro_to_usd(amount: int) -> Decimal:
    return (Decimal(amount) / MICRO).quantize(Decimal("0.000001"))


# --- the tenant's plan and period -----------------------------------------------------------------------


@dataclass(frozen=True)
class Entitlement:
    """What a tenant may use right now: its effective plan (with overrides) and its usage period."""

    tenant_id: Any
    plan: Plan
    status: str
    period_start: datetime
    period_end: datetime
    grace_until: datetime | None = None
    spend_cap_usd: Decimal | None = None
    stripe_managed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def limit(self, metric: Metric) -> Any:
        if metric == Metric.LLM_COST_USD:
            return self.spend_cap_usd
        return self.plan.limit(metric)

    def has(self, feature: Feature) -> bool:
        return feature in self.plan.features


def _add_months(anchor: datetime, months: int) -> datetime:
    index = anchor.month - 1 + months
    year, month = anchor.year + index // 12, index % 12 + 1
    return anchor.replace(year=year, month=month, day=min(anchor.day, calendar.monthrange(year, month)[1]))


def usage_period(anchor: datetime, now: datetime) -> tuple[datetime, datetime]:
    """The monthly window containing ``now``, counted from ``anchor`` (a billing period start)."""
    months = (now.year - anchor.year) * 12 + now.month - anchor.month
    start = _add_months(anchor, months)
    if start > now:
        months -= 1
        start = _add_months(anchor, months)
    return start, _add_months(anchor, months + 1)


# What the plan is read from, in this order (``entitlement_of`` takes a row of them read elsewhere).
SUBSCRIPTION_FIELDS = (
    "plan",
    "status",
    "overrides",
    "current_period_start",
    "grace_until",
    "spend_cap_usd",
    "stripe_subscription_id",
)


@lru_cache(maxsize=256)
def _plan_with(code: str, overrides_json: str) -> Plan:
    """The effective plan for a (plan, overrides) pair: computed once per process, it never changes."""
    return plan_get(code).with_overrides(json.loads(overrides_json) if overrides_json else {})


def entitlement(tenant: Tenant | Any, *, now: datetime | None = None) -> Entitlement:
    """The tenant's plan now. No subscription row means the Free plan on calendar months.

    Read on every run start, claim and LLM call: one statement without the ORM (its compilation
    costs more than the query), and the effective plan memoised by its plan code and overrides.
    """
    tenant_id = tenant.pk if isinstance(tenant, Tenant) else tenant
    row = sql.select_one(
        Subscription, SUBSCRIPTION_FIELDS, "tenant_id = %s", [sql.param(Subscription, "tenant", tenant_id)]
    )
    return entitlement_of(tenant_id, row, now=now)


def entitlement_of(tenant_id: Any, row: Sequence[Any] | None, *, now: datetime | None = None) -> Entitlement:
    """The plan from a subscription row a caller read with its own statement (``SUBSCRIPTION_FIELDS``,
    converted; None when the tenant has no subscription)."""
    now = now or timezone.now()
    if row is None:
        start, end = usage_period(CALENDAR_ANCHOR, now)
        return Entitlement(tenant_id, plan_get("free"), Subscription.Status.ACTIVE, start, end)
    code, status, overrides, period_start, grace_until, spend_cap, stripe_id = row
    plan = _plan_with(code, json.dumps(overrides, sort_keys=True) if overrides else "")
    # Usage periods follow the billing period (monthly windows from its start on yearly plans).
    anchor = period_start if code != "free" and period_start else CALENDAR_ANCHOR
    start, end = usage_period(anchor.astimezone(UTC), now)
    return Entitlement(
        tenant_id,
        plan,
        status,
        start,
        end,
        grace_until=grace_until,
        spend_cap_usd=spend_cap,
        stripe_managed=bool(stripe_id),
    )


def concurrency_limit_sql(tenant: str) -> str:
    """The tenant's concurrent-run limit as a SQL expression (``tenant``: an SQL expression of its
    id), for a claim that counts and takes a slot in one statement: the plan's figure with the
    subscription's override, as ``entitlement_of(...).limit(Metric.CONCURRENT_RUNS)`` computes it
    (``tests/billing/test_quotas.py`` compares the two on every plan)."""
    return _concurrency_limit_sql().replace("%(tenant)s", tenant)


@lru_cache(maxsize=1)
def _concurrency_limit_sql() -> str:
    plans = ", ".join(f"('{code}', {int(plan.concurrent_runs)})" for code, plan in sorted(PLANS.items()))
    subscriptions = Subscription._meta.db_table
    override = f"trunc(CAST(s.overrides ->> '{Metric.CONCURRENT_RUNS.value}' AS numeric))"
    return (
        f"(SELECT CAST(COALESCE({override}, p.lim, {int(FREE.concurrent_runs)}) AS integer) "  # noqa: S608
        f"FROM (SELECT 1) one LEFT JOIN {subscriptions} s ON s.tenant_id = %(tenant)s "
        f"LEFT JOIN (VALUES {plans}) p(code, lim) ON p.code = s.plan)"
    )


def feature_require(tenant: Tenant | Any, feature: Feature, *, field: str | None = None) -> None:
    ent = entitlement(tenant)
    if not ent.has(feature):
        metrics.QUOTA_REJECTIONS.labels(feature.value, ent.plan.code).inc()
        raise PlanLimitReached(
            feature.value,
            False,
            message=f"The {ent.plan.name} plan does not include {feature.value.replace('_', ' ')}; "
            "upgrade to use it.",
            field=field,
        )


# --- metered quotas -------------------------------------------------------------------------------------


def _units(metric: Metric | str, value: Any) -> int | None:
    if value is None:
        return None
    return usd_to_micro(value) if metric in USD_METRICS else int(value)


def _natural(metric: Metric | str, units: int) -> Any:
    return micro_to_usd(units) if metric in USD_METRICS else units


_TABLE = UsageCounter._meta.db_table


def _prep(tenant_id: Any, period_start: datetime) -> tuple[Any, Any]:
    tenant_field = UsageCounter._meta.get_field("tenant")
    start_field = UsageCounter._meta.get_field("period_start")
    return (
        tenant_field.get_db_prep_value(tenant_id, connection),
        start_field.get_db_prep_value(period_start, connection),
    )


def _add(
    tenant_id: Any, metric: str, scope: str, start: datetime, amount: int, limit: int | None
) -> tuple[int, int, int] | None:
    """``used += amount`` if it stays within ``limit``: (id, used, alerted_pct), or None when refused."""
    tenant_db, start_db = _prep(tenant_id, start)
    statement = (
        f"UPDATE {_TABLE} SET used = used + %s "  # noqa: S608 - the table name is ours, values are bound
        "WHERE tenant_id = %s AND metric = %s AND scope = %s AND period_start = %s"
    )
    params: list[Any] = [amount, tenant_db, metric, scope, start_db]
    if limit is not None and amount > 0:
        statement += " AND used + %s <= %s"
        params += [amount, limit]
    if amount < 0:
        statement = statement.replace(
            "used = used + %s", "used = CASE WHEN used + %s < 0 THEN 0 ELSE used + %s END"
        )
        params.insert(0, amount)
    with connection.cursor() as cursor:
        sql.run(cursor, statement + " RETURNING id, used, alerted_pct", params)
        row = cursor.fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row else None


def _counter_ensure(tenant_id: Any, metric: str, scope: str, start: datetime, end: datetime) -> None:
    UsageCounter.objects.bulk_create(
        [UsageCounter(tenant_id=tenant_id, metric=metric, scope=scope, period_start=start, period_end=end)],
        ignore_conflicts=True,
    )


def _refused(ent: Entitlement, metric: str, error: QuotaExceeded) -> QuotaExceeded:
    metrics.QUOTA_REJECTIONS.labels(metric, ent.plan.code).inc()
    return error


def _consume_units(
    ent: Entitlement, metric: str, units: int, limit_units: int | None, scope: str = ""
) -> tuple[int, int, int]:
    """Atomically adds ``units`` to one counter within ``limit_units``, or raises QuotaExceeded."""
    result = _add(ent.tenant_id, metric, scope, ent.period_start, units, limit_units)
    if result is None:
        _counter_ensure(ent.tenant_id, metric, scope, ent.period_start, ent.period_end)
        result = _add(ent.tenant_id, metric, scope, ent.period_start, units, limit_units)
    if result is None:
        used = (
            UsageCounter.objects.filter(
                tenant_id=ent.tenant_id, metric=metric, scope=scope, period_start=ent.period_start
            )
            .values_list("used", flat=True)
            .first()
            or 0
        )
        assert limit_units is not None
        what = metric if not scope else f"{metric} ({scope})"
        raise _refused(
            ent, metric, QuotaExceeded(what, _natural(metric, limit_units), _natural(metric, used))
        )
    return result


def quota_consume(
    tenant: Tenant | Any, metric: Metric | str, amount: int | Decimal = 1, *, ent: Entitlement | None = None
) -> int:
    """Consumes ``amount`` of a metered quota, or raises ``QuotaExceeded(metric, limit, used)``.

    Returns the new usage (in counter units). Call it inside the transaction that creates what it
    pays for, so a failure later in that transaction gives the unit back.
    """
    metric = Metric(metric)
    ent = ent or entitlement(tenant)
    limit = _units(metric, ent.limit(metric))
    counter_id, used, alerted = _consume_units(ent, metric.value, _units(metric, amount) or 0, limit)
    _alert_check(ent, metric.value, "", counter_id, used, alerted, limit)
    return used


class _Unread(Enum):
    UNREAD = "unread"


UNREAD = _Unread.UNREAD  # an agent's spend cap its caller has not read: quota_reserve reads it
AgentCap = Decimal | None | _Unread


@dataclass(frozen=True)
class Hold:
    """Units held on one counter: the tenant's own, or (Free platform credit) the founder's anchor."""

    tenant_id: Any
    metric: str
    scope: str
    units: int
    limit: int | None


@dataclass
class Reservation:
    """Units held on counters before an LLM call; ``quota_settle`` replaces them with the real figures."""

    ent: Entitlement
    held: list[Hold]
    settled: bool = False


def quota_reserve(
    tenant: Entitlement | Tenant | Any,
    *,
    tokens: int,
    cost_usd: Decimal,
    platform: bool,
    agent_id: Any = None,
    agent_cap_usd: AgentCap = UNREAD,
) -> Reservation:
    """Holds an LLM call's estimated tokens and spend on every counter that bounds it, all or nothing.

    Tokens count against the plan; spend against the plan when the call uses Falcon's own provider
    keys (``platform``), and against the tenant's and the agent's spend caps in every case.
    ``tenant`` may be the tenant's entitlement its caller has just read (a run's claim), and
    ``agent_cap_usd`` the agent's monthly cap read with it (None: no cap).
    """
    ent = tenant if isinstance(tenant, Entitlement) else entitlement(tenant)
    cost = usd_to_micro(cost_usd)
    tenant_id = ent.tenant_id
    wanted = [
        Hold(
            tenant_id, Metric.LLM_TOKENS, "", tokens, _units(Metric.LLM_TOKENS, ent.limit(Metric.LLM_TOKENS))
        )
    ]
    if platform:
        wanted.append(_platform_credit_hold(ent, cost))
    wanted.append(
        Hold(tenant_id, Metric.LLM_COST_USD, "", cost, _units(Metric.LLM_COST_USD, ent.spend_cap_usd))
    )
    if agent_id is not None:
        cap = agent_cap_usd
        if cap is UNREAD:
            row = sql.select_one(
                AgentSpendCap,
                ("monthly_usd",),
                "agent_id = %s",
                [sql.param(AgentSpendCap, "agent", agent_id)],
            )
            cap = row[0] if row else None
        wanted.append(
            Hold(tenant_id, Metric.LLM_COST_USD, f"agent:{agent_id}", cost, _units(Metric.LLM_COST_USD, cap))
        )
    held = _hold_all(ent, wanted)
    if held is None:  # a counter is missing (a new period), or a limit refuses: the precise answer
        with transaction.atomic():
            for hold in wanted:
                _consume_units(
                    replace(ent, tenant_id=hold.tenant_id), hold.metric, hold.units, hold.limit, hold.scope
                )
    else:
        _alerts_after(ent, wanted, held)
    return Reservation(ent, wanted)


def _hold_all(
    ent: Entitlement, holds: list[Hold], *, check: bool = True
) -> list[tuple[int, int, int]] | None:
    """Adds every hold's units to its counter in one statement, all or nothing: (id, used, alerted)
    per hold in order, or None when a counter is missing or (``check``) a limit would be passed.

    The counters are locked in id order (no deadlock between concurrent reservations) and only for
    the statement itself: an LLM call's four counters were four statements in a transaction, and
    hundreds of concurrent calls queued on those locks while their holders waited for the GIL.
    """
    tenant_dbs = _tenant_dbs(ent, holds)
    statement, params = _hold_sql(ent, holds, check=check, tenant_dbs=tenant_dbs)
    with connection.cursor() as cursor:
        sql.run(cursor, statement, params)
        found = cursor.fetchall()
    if len(found) != len(holds):
        return None
    # RETURNING may only name the updated table's columns (SQLite): matched back by counter key.
    by_key = {(str(t), m, sc): (int(i), int(used), int(alerted)) for i, used, alerted, t, m, sc in found}
    return [by_key[(str(tenant_dbs[h.tenant_id]), h.metric, h.scope)] for h in holds]


def _tenant_dbs(ent: Entitlement, holds: list[Hold]) -> dict[Any, Any]:
    """Each hold's tenant id prepared once (the caller's or, for Free credit, a founder's)."""
    return {t: _prep(t, ent.period_start)[0] for t in {hold.tenant_id for hold in holds}}


def _hold_sql(
    ent: Entitlement, holds: list[Hold], *, check: bool, tenant_dbs: dict[Any, Any] | None = None
) -> tuple[str, list[Any]]:
    """``_hold_all``'s statement and parameters (one row per changed counter in RETURNING)."""
    # Typed: a prepared statement's VALUES would otherwise take its parameters as text.
    uuid = "CAST(%s AS uuid)" if connection.vendor == "postgresql" else "%s"
    row = f"({uuid}, CAST(%s AS text), CAST(%s AS text), CAST(%s AS BIGINT), CAST(%s AS BIGINT))"
    rows = ", ".join([row] * len(holds))
    params: list[Any] = []
    tenant_dbs = tenant_dbs or _tenant_dbs(ent, holds)
    _, start_db = _prep(ent.tenant_id, ent.period_start)
    for hold in holds:
        params += [
            tenant_dbs[hold.tenant_id],
            hold.metric,
            hold.scope,
            hold.units,
            hold.limit if check else None,
        ]
    lock = (
        " ORDER BY c.id " + connection.ops.for_update_sql(of=("c",))
        if connection.features.has_select_for_update
        else ""
    )
    fits = "CASE WHEN w.lim IS NULL OR c.used + w.amount <= w.lim THEN 1 ELSE 0 END"
    if check is False:
        fits = "1"
    statement = (
        f"WITH want(tenant_id, metric, scope, amount, lim) AS (VALUES {rows}), "  # noqa: S608
        f"locked AS (SELECT c.id, w.amount, {fits} AS fits FROM {_TABLE} c JOIN want w "
        "ON c.tenant_id = w.tenant_id AND c.metric = w.metric AND c.scope = w.scope "
        f"WHERE c.period_start = %s{lock}), "
        "verdict AS (SELECT COUNT(*) = %s AND MIN(fits) = 1 AS ok FROM locked) "
        f"UPDATE {_TABLE} SET used = CASE WHEN used + l.amount < 0 THEN 0 ELSE used + l.amount END "
        "FROM locked l, verdict v "
        f"WHERE {_TABLE}.id = l.id AND v.ok RETURNING "
        + ", ".join(f"{_TABLE}.{c}" for c in ("id", "used", "alerted_pct", "tenant_id", "metric", "scope"))
    )
    return statement, [*params, start_db, len(holds)]


def _platform_credit_hold(ent: Entitlement, cost: int) -> Hold:
    """Spend on Falcon's own provider keys. On Free the credit belongs to a person, not a tenant: it
    needs the founder's verified e-mail, and every Free tenant they own draws on one counter (kept on
    their first tenant), so new tenants mint no new credit."""
    limit = _units(Metric.LLM_SPEND_USD, ent.limit(Metric.LLM_SPEND_USD))
    if ent.plan.code != FREE.code:
        return Hold(ent.tenant_id, Metric.LLM_SPEND_USD, "", cost, limit)
    founder = tenant_founder(ent.tenant_id)
    if founder is None or not founder.email_verified:
        metrics.QUOTA_REJECTIONS.labels(Metric.LLM_SPEND_USD.value, ent.plan.code).inc()
        raise QuotaExceeded(
            Metric.LLM_SPEND_USD.value,
            Decimal(0),
            Decimal(0),
            message="On the Free plan Falcon's built-in models need the owner's verified e-mail address; "
            "verify it, or add your own provider key as a connector.",
        )
    return Hold(founder.anchor_tenant_id, Metric.LLM_SPEND_USD, f"user:{founder.user_id}", cost, limit)


def quota_settle(reservation: Reservation, *, tokens: int, cost_usd: Decimal | float) -> None:
    """Replaces the reservation by what the call really used (0 and 0 when it failed). Never refuses:
    the tokens are spent; a call that overshoots its estimate is what the next reservation meets."""
    if reservation.settled:
        return
    reservation.settled = True
    deltas = _settle_deltas(reservation, tokens, cost_usd)
    if deltas:
        _settle_now(reservation.ent, deltas)


def _settle_deltas(reservation: Reservation, tokens: int, cost_usd: Decimal | float) -> list[Hold]:
    cost = usd_to_micro(cost_usd)
    deltas = [
        replace(hold, units=(tokens if hold.metric == Metric.LLM_TOKENS.value else cost) - hold.units)
        for hold in reservation.held
    ]
    return [d for d in deltas if d.units != 0]


def _settle_now(ent: Entitlement, deltas: list[Hold]) -> None:
    settled = _hold_all(ent, deltas, check=False)
    if settled is None:  # a counter vanished (retention): settle what is there, one by one
        settled = []
        with transaction.atomic():
            for hold in deltas:
                result = _add(hold.tenant_id, hold.metric, hold.scope, ent.period_start, hold.units, None)
                settled.append(result or (0, 0, 100))
    _alerts_after(ent, deltas, settled)


@dataclass(frozen=True)
class Settlement:
    """A reservation's settlement as one statement for the caller to run within its own (a run's
    finishing statement: one round trip and one commit instead of two). It only gives units back, so
    no usage alert can be crossed; ``changed`` is how many counters it must change."""

    statement: str
    params: list[Any]
    changed: int
    ent: Entitlement
    deltas: list[Hold]

    def done(self, changed: int) -> None:
        """After the caller's statement: a counter that had vanished meanwhile (its statement changed
        none, all or nothing) is settled the slow way, as ``quota_settle`` would."""
        if changed != self.changed:
            _settle_now(self.ent, self.deltas)


def quota_settlement(
    reservation: Reservation, *, tokens: int, cost_usd: Decimal | float
) -> Settlement | None:
    """``quota_settle`` for a caller that has a statement of its own to send: the settlement as a
    statement when the call used no more than its estimate (PostgreSQL: a data-modifying CTE), else
    settled here and now. None: nothing left to run (settled, or nothing to give back)."""
    if reservation.settled:
        return None
    reservation.settled = True
    deltas = _settle_deltas(reservation, tokens, cost_usd)
    if not deltas:
        return None
    if connection.vendor != "postgresql" or any(d.units > 0 for d in deltas):
        _settle_now(reservation.ent, deltas)  # an overshoot may cross an alert: checked as it is added
        return None
    statement, params = _hold_sql(reservation.ent, deltas, check=False)
    return Settlement(statement, params, len(deltas), reservation.ent, deltas)


def _alerts_after(ent: Entitlement, holds: list[Hold], results: list[tuple[int, int, int]]) -> None:
    """The 80/100 % alerts a batch of additions may have crossed (additions only)."""
    for hold, (counter_id, used, alerted) in zip(holds, results, strict=True):
        if hold.units > 0:
            _alert_check(
                replace(ent, tenant_id=hold.tenant_id),
                hold.metric,
                hold.scope,
                counter_id,
                used,
                alerted,
                hold.limit,
            )


def usage_summary(tenant: Tenant | Any) -> dict[str, Any]:
    """Every metric with its usage, limit and period, as ``GET /api/v1/usage`` shows it."""
    ent = entitlement(tenant)
    used = dict(
        UsageCounter.objects.filter(
            tenant_id=ent.tenant_id, period_start=ent.period_start, scope=""
        ).values_list("metric", "used")
    )
    founder = tenant_founder(ent.tenant_id) if ent.plan.code == FREE.code else None
    if founder is not None:  # Free platform credit is the founder's, shared by their Free tenants
        used[Metric.LLM_SPEND_USD.value] = (
            UsageCounter.objects.filter(
                tenant_id=founder.anchor_tenant_id,
                metric=Metric.LLM_SPEND_USD,
                scope=f"user:{founder.user_id}",
                period_start=ent.period_start,
            )
            .values_list("used", flat=True)
            .first()
            or 0
        )
    metrics: dict[str, Any] = {}
    for metric in (*METERED, Metric.LLM_COST_USD):
        limit = ent.limit(metric)
        included = ent.plan.metered[metric].included if metric in ent.plan.metered else limit
        metrics[metric.value] = {
            "used": json_value(_natural(metric, used.get(metric.value, 0))),
            "limit": json_value(limit),
            "included": json_value(included),
            "period_start": ent.period_start,
            "period_end": ent.period_end,
        }
    for metric in (Metric.AGENTS, Metric.MEMBERS, Metric.CONNECTORS, Metric.TRIGGERS, Metric.CONCURRENT_RUNS):
        used_now = object_count(metric, ent.tenant_id)
        metrics[metric.value] = {"used": used_now, "limit": ent.limit(metric)}
    for metric in (Metric.MIN_SCHEDULE_INTERVAL_S, Metric.RETENTION_DAYS, Metric.API_REQUESTS_PER_MINUTE):
        metrics[metric.value] = {"limit": ent.limit(metric)}
    return {
        "plan": ent.plan.code,
        "status": ent.status,
        "period_start": ent.period_start,
        "period_end": ent.period_end,
        "grace_until": ent.grace_until,
        "features": sorted(f.value for f in ent.plan.features),
        "metrics": metrics,
    }


# --- count limits ---------------------------------------------------------------------------------------


def quota_count_check(tenant: Tenant | Any, metric: Metric, *, adding: int = 1) -> None:
    """Refuses (402) creating ``adding`` more objects of a counted kind beyond the plan's limit.

    Locks the tenant row first (inside the caller's transaction), so concurrent creations queue.
    Members count pending invitations too: an invitation holds a seat until it is accepted or expires.
    """
    tenant_id = tenant.pk if isinstance(tenant, Tenant) else tenant
    ent = entitlement(tenant_id)
    limit = ent.limit(metric)
    if limit is None:
        return
    tenant_lock(tenant_id)
    current = object_count(metric, tenant_id)
    if current + adding > limit:
        metrics.QUOTA_REJECTIONS.labels(metric.value, ent.plan.code).inc()
        noun = metric.value if metric != Metric.MEMBERS else "members (pending invitations included)"
        raise PlanLimitReached(
            metric.value,
            limit,
            current,
            message=f"The {ent.plan.name} plan allows {limit} {noun}; this organization has {current}.",
        )


def quota_over_limit_check(tenant: Tenant | Any, metric: Metric) -> None:
    """Refuses (402) changing objects of a kind the tenant has more of than its plan allows.

    After a downgrade nothing is deleted: the excess makes that kind read-only until some are deleted
    or the plan grows back.
    """
    tenant_id = tenant.pk if isinstance(tenant, Tenant) else tenant
    ent = entitlement(tenant_id)
    limit = ent.limit(metric)
    if limit is None:
        return
    current = object_count(metric, tenant_id)
    if current > limit:
        metrics.QUOTA_REJECTIONS.labels(metric.value, ent.plan.code).inc()
        raise PlanLimitReached(
            metric.value,
            limit,
            current,
            message=f"The {ent.plan.name} plan allows {limit} {metric.value} and this organization has "
            f"{current}: they are read-only until you delete {current - limit} or upgrade.",
        )


def plan_limit(tenant: Tenant | Any, metric: Metric) -> Any:
    return entitlement(tenant).limit(metric)


# --- alerts at 80 % and 100 % ---------------------------------------------------------------------------


def _alert_check(
    ent: Entitlement, metric: str, scope: str, counter_id: int, used: int, alerted: int, limit: int | None
) -> None:
    """Claims the highest threshold newly crossed (one conditional UPDATE), then alerts on commit."""
    if not limit:
        return
    pct = used * 100 // limit
    level = max((t for t in ALERT_THRESHOLDS if pct >= t), default=0)
    if level <= alerted:
        return
    claimed = UsageCounter.objects.filter(pk=counter_id, alerted_pct__lt=level).update(alerted_pct=level)
    if not claimed:
        return
    usage_alert_record(
        tenant_id=ent.tenant_id,
        metric=metric,
        scope=scope,
        level=level,
        used=_natural(metric, used),
        limit=_natural(metric, limit),
    )


class PlanLimits:
    """The plan limit policy that tenants and connectors consult (``tenants.limits``)."""

    def count_check(self, tenant_id: Any, kind: str, *, adding: int = 1) -> None:
        quota_count_check(tenant_id, Metric(kind), adding=adding)

    def over_limit_check(self, tenant_id: Any, kind: str) -> None:
        quota_over_limit_check(tenant_id, Metric(kind))

    def feature_require(self, tenant_id: Any, feature: str, *, field: str | None = None) -> None:
        feature_require(tenant_id, Feature(feature), field=field)

    def retention_days_max(self, tenant_id: Any) -> int:
        return int(entitlement(tenant_id).limit(Metric.RETENTION_DAYS))
