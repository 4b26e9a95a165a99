"""The app graph is one-way: falcon <- tenants <- connectors <- billing <- agents.

Every import in every module of the four apps and the project package (at module level, inside
functions, under ``TYPE_CHECKING``) is read from the source; one that reaches a higher layer fails the
test. ``lint-imports`` (``make lint``) checks the same contract and the layers inside agents; this test
keeps the rule in ``pytest`` as well and does not depend on the linter's configuration.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["falcon", "tenants", "connectors", "billing", "agents", "dashboard"]  # lowest first
WIRING = {"falcon/urls.py"}  # the URL map may import every app
AGENT_DOMAINS = [
    "engine",
    "llm",
    "notifications",
    "prompts",
    "workflows",
    "runs",
    "triggers",
    "generator",
]  # lowest first


def _imports(path: Path) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def _modules(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if "migrations" not in p.parts]


def test_no_app_imports_a_higher_app():
    upward = []
    for rank, app in enumerate(LAYERS):
        higher = LAYERS[rank + 1 :]
        for path in _modules(app):
            relative = str(path.relative_to(ROOT))
            if relative in WIRING:
                continue
            for line, name in _imports(path):
                if name.split(".", 1)[0] in higher:
                    upward.append(f"{relative}:{line} imports {name}")
    assert upward == []


def test_no_agent_domain_imports_a_higher_domain():
    upward = []
    for rank, domain in enumerate(AGENT_DOMAINS):
        higher = {f"agents.{d}" for d in AGENT_DOMAINS[rank + 1 :]} | {"agents.models", "agents.urls"}
        for path in _modules(f"agents/{domain}"):
            for line, name in _imports(path):
                if any(name == h or name.startswith(h + ".") for h in higher):
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert upward == []


def test_the_check_sees_an_upward_import(tmp_path):
    """The reader finds imports inside functions too (what the old code used to dodge cycles)."""
    module = tmp_path / "sample.py"
    module.write_text("def f():\n    from agents.models import Run\n    return Run\n")
    assert (2, "agents.models") in _imports(module)
