"""The plan catalogue: what each plan includes and allows. Data, not code paths: quotas read it.

Metered limits (runs, tokens, platform LLM spend) count per usage period and have two figures:
``included`` (what the price covers) and ``limit`` (the hard stop; ``None`` = no stop). Usage between
the two on a paid plan is reported to Stripe Billing Meters as overage; on Free they are equal.
Count limits (agents, members...) bound how many objects exist at once. ``None`` means unlimited.
Enterprise tenants take per-tenant overrides of any figure (``Subscription.overrides``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any


class Metric(StrEnum):
    # metered, per usage period
    RUNS = "runs"
    LLM_TOKENS = "llm_tokens"
    LLM_SPEND_USD = "llm_spend_usd"  # platform-provided models (Falcon's keys), what the plan pays for
    LLM_COST_USD = "llm_cost_usd"  # every LLM call, own keys included: what tenant spend caps bound
    # counts of objects
    AGENTS = "agents"
    MEMBERS = "members"
    CONNECTORS = "connectors"
    TRIGGERS = "triggers"
    # gauges and settings
    CONCURRENT_RUNS = "concurrent_runs"
    MIN_SCHEDULE_INTERVAL_S = "min_schedule_interval_s"
    RETENTION_DAYS = "retention_days"
    API_REQUESTS_PER_MINUTE = "api_requests_per_minute"


METERED = (Metric.RUNS, Metric.LLM_TOKENS, Metric.LLM_SPEND_USD)
COUNTED = (Metric.AGENTS, Metric.MEMBERS, Metric.CONNECTORS, Metric.TRIGGERS)
USD_METRICS = (Metric.LLM_SPEND_USD, Metric.LLM_COST_USD)
MICRO = 1_000_000  # USD amounts are counted in micro-dollars so counters stay integers


class Feature(StrEnum):
    MFA_ENFORCEMENT = "mfa_enforcement"
    AUDIT_EXPORT = "audit_export"
    # SSO joins this list when it is built.


@dataclass(frozen=True)
class Metered:
    included: int | Decimal
    limit: int | Decimal | None
    meter_event: str = ""  # the Stripe Billing Meter's event name for overage ("" = not billed)


@dataclass(frozen=True)
class Plan:
    code: str
    name: str
    price_usd_month: int | None  # None: contact sales
    metered: dict[Metric, Metered]
    counts: dict[Metric, int | None]
    concurrent_runs: int
    min_schedule_interval_s: int
    retention_days: int
    api_requests_per_minute: int
    features: frozenset[Feature] = field(default_factory=frozenset)
    paid: bool = True

    def limit(self, metric: Metric) -> int | Decimal | None:
        """The hard limit of any metric (in its natural unit: runs, tokens, USD, objects, seconds)."""
        if metric in self.metered:
            return self.metered[metric].limit
        if metric in self.counts:
            return self.counts[metric]
        return {
            Metric.CONCURRENT_RUNS: self.concurrent_runs,
            Metric.MIN_SCHEDULE_INTERVAL_S: self.min_schedule_interval_s,
            Metric.RETENTION_DAYS: self.retention_days,
            Metric.API_REQUESTS_PER_MINUTE: self.api_requests_per_minute,
        }.get(metric)

    def with_overrides(self, overrides: dict[str, Any]) -> Plan:
        """This plan with per-tenant figures (Enterprise contracts); unknown keys are ignored."""
        if not overrides:
            return self
        metered = dict(self.metered)
        counts = dict(self.counts)
        scalars: dict[str, Any] = {}
        for key, value in overrides.items():
            if key == "features":
                scalars["features"] = frozenset(Feature(f) for f in value)
                continue
            try:
                metric = Metric(key)
            except ValueError:
                continue
            if metric in metered:
                number = None if value is None else _number(metric, value)
                current = metered[metric]
                included = current.included if number is None else min(current.included, number)
                metered[metric] = replace(current, limit=number, included=included)
            elif metric in counts:
                counts[metric] = None if value is None else int(value)
            elif metric.value in {"concurrent_runs", "min_schedule_interval_s", "retention_days"} or (
                metric == Metric.API_REQUESTS_PER_MINUTE
            ):
                scalars[metric.value] = int(value)
        return replace(self, metered=metered, counts=counts, **scalars)


def _number(metric: Metric, value: Any) -> int | Decimal:
    return Decimal(str(value)) if metric in USD_METRICS else int(value)


def overrides_problems(overrides: dict[str, Any]) -> list[str]:
    """What is wrong with an overrides mapping (for the operator command), empty when valid."""
    problems = []
    for key, value in overrides.items():
        if key == "features":
            bad = [f for f in value if f not in Feature.__members__.values()]
            if bad:
                problems.append(f"unknown features: {', '.join(map(str, bad))}")
            continue
        try:
            metric = Metric(key)
        except ValueError:
            problems.append(f"unknown limit {key!r}")
            continue
        if value is None and metric in (*METERED, *COUNTED):
            continue
        try:
            number = _number(metric, value)
        except (ArithmeticError, TypeError, ValueError):
            problems.append(f"{key} must be a number")
            continue
        if number < 0:
            problems.append(f"{key} must not be negative")
    return problems


FREE = Plan(
    code="free",
    name="Free",
    price_usd_month=0,
    paid=False,
    metered={
        Metric.RUNS: Metered(1_000, 1_000),
        Metric.LLM_TOKENS: Metered(500_000, 500_000),
        Metric.LLM_SPEND_USD: Metered(Decimal(5), Decimal(5)),
    },
    counts={Metric.AGENTS: 3, Metric.MEMBERS: 3, Metric.CONNECTORS: 3, Metric.TRIGGERS: 5},
    concurrent_runs=2,
    min_schedule_interval_s=900,
    retention_days=7,
    api_requests_per_minute=60,
)

PRO = Plan(
    code="pro",
    name="Pro",
    price_usd_month=49,
    metered={
        Metric.RUNS: Metered(20_000, 100_000, "falcon_runs"),
        Metric.LLM_TOKENS: Metered(10_000_000, 50_000_000, "falcon_llm_tokens"),
        Metric.LLM_SPEND_USD: Metered(Decimal(50), Decimal(500), "falcon_llm_spend_microusd"),
    },
    counts={Metric.AGENTS: 25, Metric.MEMBERS: 10, Metric.CONNECTORS: 25, Metric.TRIGGERS: 50},
    concurrent_runs=10,
    min_schedule_interval_s=60,
    retention_days=30,
    api_requests_per_minute=600,
    features=frozenset({Feature.MFA_ENFORCEMENT}),
)

TEAM = Plan(
    code="team",
    name="Team",
    price_usd_month=299,
    metered={
        Metric.RUNS: Metered(150_000, 750_000, "falcon_runs"),
        Metric.LLM_TOKENS: Metered(75_000_000, 375_000_000, "falcon_llm_tokens"),
        Metric.LLM_SPEND_USD: Metered(Decimal(300), Decimal(3_000), "falcon_llm_spend_microusd"),
    },
    counts={Metric.AGENTS: 200, Metric.MEMBERS: 50, Metric.CONNECTORS: 200, Metric.TRIGGERS: 500},
    concurrent_runs=50,
    min_schedule_interval_s=10,
    retention_days=90,
    api_requests_per_minute=3_000,
    features=frozenset({Feature.MFA_ENFORCEMENT, Feature.AUDIT_EXPORT}),
)

ENTERPRISE = Plan(
    code="enterprise",
    name="Enterprise",
    price_usd_month=None,
    metered={
        Metric.RUNS: Metered(1_000_000, None, "falcon_runs"),
        Metric.LLM_TOKENS: Metered(500_000_000, None, "falcon_llm_tokens"),
        Metric.LLM_SPEND_USD: Metered(Decimal(2_000), None, "falcon_llm_spend_microusd"),
    },
    counts={Metric.AGENTS: None, Metric.MEMBERS: None, Metric.CONNECTORS: None, Metric.TRIGGERS: None},
    concurrent_runs=200,
    min_schedule_interval_s=1,
    retention_days=365,
    api_requests_per_minute=12_000,
    features=frozenset(Feature),
)

PLANS: dict[str, Plan] = {plan.code: plan for plan in (FREE, PRO, TEAM, ENTERPRISE)}


def plan_get(code: str) -> Plan:
    return PLANS.get(code, FREE)


def _fmt(value: int | Decimal | None, metric: Metric) -> str:
    if value is None:
        return "unlimited"
    if metric in USD_METRICS:
        return f"${value:,}"
    if metric == Metric.MIN_SCHEDULE_INTERVAL_S:
        return f"{value} s"
    return f"{value:,}"


def plans_markdown() -> str:
    """The plan table as the README shows it (a test keeps the README in step)."""
    plans = list(PLANS.values())
    lines = [
        "| | " + " | ".join(p.name for p in plans) + " |",
        "|---|" + "---|" * len(plans),
        "| price / month | "
        + " | ".join("contact us" if p.price_usd_month is None else f"${p.price_usd_month}" for p in plans)
        + " |",
    ]
    for metric in METERED:
        cells = []
        for p in plans:
            m = p.metered[metric]
            cells.append(
                _fmt(m.limit, metric)
                if m.included == m.limit
                else f"{_fmt(m.included, metric)} included, max {_fmt(m.limit, metric)}"
            )
        lines.append(f"| `{metric.value}` / period | " + " | ".join(cells) + " |")
    for metric in (*COUNTED, *[m for m in Metric if m not in METERED and m not in COUNTED]):
        if metric == Metric.LLM_COST_USD:
            continue
        lines.append(
            f"| `{metric.value}` | " + " | ".join(_fmt(p.limit(metric), metric) for p in plans) + " |"
        )
    lines.append(
        "| features | "
        + " | ".join(", ".join(sorted(f.value for f in p.features)) or "-" for p in plans)
        + " |"
    )
    return "\n".join(lines)
