"""Dependencies between the steps of one list (the workflow's, or a map's sub-steps)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agents.engine.spec import BranchStep


def scope_deps(steps: Sequence[Any]) -> dict[str, list[str]]:
    """Each step's prerequisites: its ``needs`` (default: the previous step), plus the branch choosing it."""
    result: dict[str, list[str]] = {}
    for index, step in enumerate(steps):
        if step.needs is not None:
            result[step.id] = list(step.needs)
        else:
            result[step.id] = [steps[index - 1].id] if index else []
    for step in steps:
        if isinstance(step, BranchStep):
            for target in [s for case in step.cases for s in case.steps] + step.default:
                if target in result and step.id not in result[target]:
                    result[target].append(step.id)
    return result


def execution_order(steps: Sequence[Any]) -> list[Any]:
    """Steps in dependency order, stable with respect to the list (validation has excluded cycles)."""
    deps = scope_deps(steps)
    by_id = {step.id: step for step in steps}
    done: set[str] = set()
    order: list[Any] = []
    while len(order) < len(steps):
        for step in steps:
            if step.id not in done and all(d in done or d not in by_id for d in deps[step.id]):
                order.append(step)
                done.add(step.id)
                break
        else:  # pragma: no cover - cycles are refused at validation
            raise ValueError("dependency cycle")
    return order
