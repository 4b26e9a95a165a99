"""A workflow's steps as a graph laid out for server-rendered SVG: one column per dependency depth,
arrows for ``needs`` (explicit or the previous step) and dashed, labelled arrows for branch choices.
Works on any definition, invalid ones included (cycles and unknown ids are drawn, not resolved)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 150, 44, 60, 22, 12


@dataclass(frozen=True)
class Node:
    id: str
    type: str
    x: int
    y: int
    w: int = NODE_W
    h: int = NODE_H


@dataclass(frozen=True)
class Edge:
    path: str
    label: str
    branch: bool
    lx: int
    ly: int


@dataclass(frozen=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def _deps(steps: list[dict[str, Any]]) -> dict[str, list[tuple[str, str, bool]]]:
    """Step id -> [(prerequisite id, label, is_branch_edge)]."""
    ids = [str(step.get("id", f"#{i}")) for i, step in enumerate(steps)]
    result: dict[str, list[tuple[str, str, bool]]] = {}
    for index, step in enumerate(steps):
        needs = step.get("needs")
        if isinstance(needs, list):
            result[ids[index]] = [(str(n), "", False) for n in needs]
        else:
            result[ids[index]] = [(ids[index - 1], "", False)] if index else []
    for index, step in enumerate(steps):
        if step.get("type") != "branch":
            continue
        raw_cases = step.get("cases")
        cases: list[Any] = raw_cases if isinstance(raw_cases, list) else []
        targets = [
            (t, f"case {k + 1}")
            for k, c in enumerate(cases)
            if isinstance(c, dict)
            for t in c.get("steps") or []
        ]
        targets += [(t, "default") for t in step.get("default") or []]
        for target, label in targets:
            if target in result:
                entries = [e for e in result[target] if e[0] != ids[index]]
                result[target] = [*entries, (ids[index], label, True)]
    return result


def layout(definition: dict[str, Any]) -> Graph:
    steps = [s for s in (definition.get("steps") or []) if isinstance(s, dict)]
    deps = _deps(steps)
    depth: dict[str, int] = dict.fromkeys(deps, 0)
    for _ in range(len(deps)):  # longest path, bounded so that a cycle cannot loop forever
        changed = False
        for node, prerequisites in deps.items():
            for prerequisite, _label, _branch in prerequisites:
                if prerequisite in depth and depth[prerequisite] + 1 > depth[node]:
                    depth[node] = min(depth[prerequisite] + 1, len(deps))
                    changed = True
        if not changed:
            break
    rows: dict[int, int] = {}
    nodes: dict[str, Node] = {}
    for step in steps:
        step_id = str(step.get("id", ""))
        column = depth.get(step_id, 0)
        row = rows.get(column, 0)
        rows[column] = row + 1
        nodes[step_id] = Node(
            step_id, str(step.get("type", "?")), PAD + column * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y)
        )
    edges = []
    for target, prerequisites in deps.items():
        for source, label, branch in prerequisites:
            if source not in nodes or target not in nodes:
                continue
            a, b = nodes[source], nodes[target]
            x1, y1 = a.x + a.w, a.y + a.h // 2
            x2, y2 = b.x, b.y + b.h // 2
            if x2 <= x1:  # same column (a cycle or odd needs): loop below
                ax, bx, below = a.x + a.w // 2, b.x + b.w // 2, b.y + b.h + 30
                path = f"M{ax},{a.y + a.h} C{ax},{below} {bx},{below} {bx},{b.y + b.h}"
            else:
                mid = (x1 + x2) // 2
                path = f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 2},{y2}"
            edges.append(Edge(path, label, branch, (x1 + x2) // 2, (y1 + y2) // 2 - 4))
    width = max((n.x + n.w for n in nodes.values()), default=0) + PAD
    height = max((n.y + n.h for n in nodes.values()), default=0) + PAD + 30
    return Graph(list(nodes.values()), edges, max(width, 200), max(height, 80))
