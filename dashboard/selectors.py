"""What the dashboard's pages show, read with a fixed number of queries (no N+1)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from agents.runs.models import Run, StepRun
from agents.workflows.models import Agent
from billing.quotas import usage_summary
from tenants.access import TenantContext
from tenants.object_access import visible_filter

P95_SAMPLE = 2000


def visible_runs(ctx: TenantContext) -> QuerySet[Run]:
    """The tenant's runs whose agent this member may see (the API's narrowing, the same rule)."""
    runs = Run.objects.filter(tenant=ctx.tenant)
    narrowing = visible_filter(ctx, Agent, "agent")
    return runs.filter(narrowing) if narrowing is not None else runs


def visible_agents(ctx: TenantContext) -> QuerySet[Agent]:
    agents = Agent.objects.filter(tenant=ctx.tenant)
    narrowing = visible_filter(ctx, Agent)
    return agents.filter(narrowing) if narrowing is not None else agents


@dataclass(frozen=True)
class Bar:
    label: str
    used: Any
    limit: Any

    @property
    def percent(self) -> int:
        try:
            return min(100, int(float(self.used) * 100 / float(self.limit))) if self.limit else 0
        except (TypeError, ValueError, ZeroDivisionError):
            return 0


def _p95(durations: list[float]) -> float | None:
    if not durations:
        return None
    ordered = sorted(durations)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def overview(ctx: TenantContext, *, now: datetime | None = None) -> dict[str, Any]:
    now = now or timezone.now()
    today = now.replace(hour=0, minute=0, second=0, microsecond=0)
    week = now - timedelta(days=7)
    runs = visible_runs(ctx)
    counts = runs.aggregate(
        today=Count("pk", filter=Q(created_at__gte=today)),
        week=Count("pk", filter=Q(created_at__gte=week)),
        finished=Count("pk", filter=Q(created_at__gte=week, status__in=Run.FINISHED)),
        failed=Count(
            "pk", filter=Q(created_at__gte=week, status__in=[Run.Status.FAILED, Run.Status.TIMED_OUT])
        ),
    )
    spans = (
        runs.filter(created_at__gte=week, started_at__isnull=False, finished_at__isnull=False)
        .order_by("-created_at")
        .values_list("started_at", "finished_at")[:P95_SAMPLE]
    )
    p95 = _p95([(end - start).total_seconds() for start, end in spans if start and end])
    failing: dict[Any, dict[str, Any]] = {}
    for run in (
        runs.filter(created_at__gte=week, status__in=[Run.Status.FAILED, Run.Status.TIMED_OUT])
        .select_related("agent")
        .order_by("-created_at")[:200]
    ):
        entry = failing.setdefault(run.agent_id, {"agent": run.agent, "failures": 0, "last": run})
        entry["failures"] += 1
    usage = usage_summary(ctx.tenant)
    metrics = usage["metrics"]
    bars = [
        Bar(name.replace("_", " "), metrics[name]["used"], metrics[name]["limit"])
        for name in (
            "runs",
            "llm_tokens",
            "llm_spend_usd",
            "llm_cost_usd",
            "agents",
            "connectors",
            "triggers",
        )
        if name in metrics
    ]
    return {
        "runs_today": counts["today"],
        "runs_week": counts["week"],
        "failure_rate": (counts["failed"] * 100 / counts["finished"]) if counts["finished"] else None,
        "p95_s": p95,
        "failing": sorted(failing.values(), key=lambda e: -e["failures"])[:10],
        "waiting": list(
            runs.filter(status=Run.Status.WAITING).select_related("agent").order_by("-created_at")[:20]
        ),
        "recent": list(runs.select_related("agent", "version").order_by("-created_at")[:10]),
        "plan": usage["plan"],
        "bars": bars,
    }


@dataclass(frozen=True)
class TimelineBar:
    step: StepRun
    x: float  # percent of the run's span
    width: float


def timeline(run: Run, steps: list[StepRun]) -> list[TimelineBar]:
    """One bar per step attempt on the run's time axis (percentages, for a server-rendered SVG)."""
    timed = [(s, s.started_at, s.finished_at) for s in steps if s.started_at and s.finished_at]
    if not timed:
        return []
    start = min(begin for _, begin, _ in timed if begin)
    end = max(finish for _, _, finish in timed if finish)
    span = max((end - start).total_seconds(), 0.001)
    bars = []
    for step, begin, finish in timed:
        if begin is None or finish is None:
            continue
        x = (begin - start).total_seconds() / span * 100
        width = max((finish - begin).total_seconds() / span * 100, 0.5)
        bars.append(TimelineBar(step, round(x, 2), round(min(width, 100 - x), 2)))
    return bars
