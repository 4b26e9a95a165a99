"""What billing acts on in the apps above it, registered from their ``AppConfig.ready()``.

Billing never imports those apps: what it counts for count limits and usage, what retention prunes,
what a downgrade pauses and who hears of a usage alert are declared here by the apps that own them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from billing.plans import Metric
from tenants.audit import Actor

Counter = Callable[[Any], int]
"""The number of objects a tenant holds now (tenant id -> count)."""

DowngradeHook = Callable[[Any, Actor, str], str]
"""Pauses what a smaller plan forbids (tenant id, actor, reason); returns a sentence for the e-mail."""

AlertListener = Callable[..., None]
"""Told of a usage alert: ``(tenant_id=, subject=, body=, data=)``."""


@dataclass(frozen=True)
class Pruner:
    """Deletes a tenant's data older than its plan's retention."""

    name: str
    tenant_ids: Callable[[], Iterable[Any]]
    prune: Callable[[Any, datetime], dict[str, int]]


_counters: dict[Metric, Counter] = {}
_pruners: list[Pruner] = []
_downgrade_hooks: list[DowngradeHook] = []
_alert_listeners: list[AlertListener] = []


def count_register(metric: Metric, counter: Counter) -> None:
    _counters[metric] = counter


def object_count(metric: Metric, tenant_id: Any) -> int:
    """The one definition of "how many" for count limits and usage."""
    try:
        counter = _counters[metric]
    except KeyError as exc:
        raise RuntimeError(f"Nothing counts {metric.value!r}: its app did not register a counter.") from exc
    return counter(tenant_id)


def counted_metrics() -> list[Metric]:
    return list(_counters)


def pruner_register(pruner: Pruner) -> None:
    if all(p.name != pruner.name for p in _pruners):
        _pruners.append(pruner)


def pruners() -> list[Pruner]:
    return list(_pruners)


def downgrade_register(hook: DowngradeHook) -> None:
    if hook not in _downgrade_hooks:
        _downgrade_hooks.append(hook)


def downgrade_hooks() -> list[DowngradeHook]:
    return list(_downgrade_hooks)


def usage_alert_register(listener: AlertListener) -> None:
    if listener not in _alert_listeners:
        _alert_listeners.append(listener)


def usage_alert_listeners() -> list[AlertListener]:
    return list(_alert_listeners)
