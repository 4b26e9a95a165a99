"""Server-rendered SVG charts of a tenant's usage: runs and cost per day by agent, tokens and cost per
day by model (stacked bars, the largest series first, the rest as "other"). One aggregate query each."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, F, Sum
from django.db.models.functions import TruncDate

from agents.runs.models import Run, StepRun
from tenants.models import Tenant

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM = 640, 180, 44, 22
SERIES = 5
COLOURS = ("#3451d1", "#1f8a4c", "#b7791f", "#6b46c1", "#c0392b", "#8a94a6")


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    w: float
    h: float
    colour: str
    title: str


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    rects: list[Rect]
    legend: list[tuple[str, str, str]]  # (name, colour, total)
    max_label: str
    first_day: str
    last_day: str
    width: int = WIDTH
    height: int = HEIGHT
    totals: list[tuple[str, str]] | None = None


def _chart(title: str, unit: str, rows: list[tuple[date, str, Any]], days: list[date], fmt: str) -> Chart:
    totals: dict[str, float] = defaultdict(float)
    for _, name, value in rows:
        totals[name or "—"] += float(value or 0)
    top = [name for name, _ in sorted(totals.items(), key=lambda kv: -kv[1])[:SERIES]]
    per_day: dict[date, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for day, name, value in rows:
        key = (name or "—") if (name or "—") in top else "other"
        per_day[day][key] += float(value or 0)
    names = top + (["other"] if any("other" in v for v in per_day.values()) else [])
    colour = {name: COLOURS[i % len(COLOURS)] for i, name in enumerate(names)}
    peak = max((sum(v.values()) for v in per_day.values()), default=0) or 1
    slot = (WIDTH - PAD_LEFT) / max(len(days), 1)
    rects = []
    for i, day in enumerate(days):
        y = float(HEIGHT - PAD_BOTTOM)
        for name in names:
            value = per_day.get(day, {}).get(name, 0)
            if not value:
                continue
            h = value / peak * (HEIGHT - PAD_BOTTOM - 10)
            y -= h
            rects.append(
                Rect(
                    PAD_LEFT + i * slot + 1,
                    y,
                    max(slot - 2, 1),
                    h,
                    colour[name],
                    f"{day}: {name} {fmt.format(value)}",
                )
            )
    legend_totals = {**totals, "other": sum(v for k, v in totals.items() if k not in top)}
    legend = [(name, colour[name], fmt.format(legend_totals.get(name, 0))) for name in names]
    ranked = sorted(totals.items(), key=lambda kv: -kv[1])
    peak_label = fmt.format(peak) if rects else "0"
    first, last = f"{days[0]:%d %b}", f"{days[-1]:%d %b}"
    totals_shown = [(name, fmt.format(value)) for name, value in ranked]
    return Chart(title, unit, rects, legend, peak_label, first, last, totals=totals_shown)


def daily_usage(tenant: Tenant, since: datetime) -> list[Chart]:
    days = [
        since.date() + timedelta(days=k)
        for k in range((datetime.now(since.tzinfo).date() - since.date()).days + 1)
    ]
    runs = list(
        Run.objects.filter(tenant=tenant, created_at__gte=since)
        .annotate(day=TruncDate("created_at"))
        .values("day", "agent__name")
        .annotate(n=Count("pk"), cost=Sum("cost_usd"))
        .values_list("day", "agent__name", "n", "cost")
    )
    steps = StepRun.objects.filter(tenant=tenant, created_at__gte=since).exclude(model="")
    by_model = list(
        steps.annotate(day=TruncDate("created_at"))
        .values("day", "model")
        .annotate(tokens=Sum(F("prompt_tokens") + F("completion_tokens")), cost=Sum("cost_usd"))
        .values_list("day", "model", "tokens", "cost")
    )
    return [
        _chart("Runs per day, by agent", "runs", [(d, a, n) for d, a, n, _ in runs], days, "{:,.0f}"),
        _chart(
            "Cost per day, by agent",
            "USD",
            [(d, a, Decimal(c or 0)) for d, a, _, c in runs],
            days,
            "${:,.4f}",
        ),
        _chart("Tokens per day, by model", "tokens", [(d, m, t) for d, m, t, _ in by_model], days, "{:,.0f}"),
        _chart(
            "Cost per day, by model",
            "USD",
            [(d, m, Decimal(c or 0)) for d, m, _, c in by_model],
            days,
            "${:,.4f}",
        ),
    ]
