"""Every outbound connection a tenant can cause goes through the network policy (connectors/netguard.py).

The test reads the source of every app, finds each call that opens a connection (HTTP clients, sockets,
SMTP, database drivers, the LLM SDK, Stripe), and checks it against this list: a call site a tenant can
aim must use the policy in the same function; the platform's own services (Stripe, the operator's SMTP)
are listed with why. A new call site fails the test until it is reviewed here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = ("falcon", "tenants", "connectors", "billing", "agents", "dashboard")
NETWORK_MODULES = {"httpx", "requests", "urllib", "socket", "smtplib", "psycopg", "pymysql", "litellm"}
NETWORK_MODULES |= {"stripe", "aiohttp", "http", "httpx2"}
OPENERS = {"Client", "AsyncClient", "request", "get", "post", "put", "patch", "delete", "stream", "urlopen"}
OPENERS |= {"create_connection", "socket", "SMTP", "SMTP_SSL", "connect", "completion", "acompletion"}
OPENERS |= {"HTTPConnection", "HTTPSConnection", "ClientSession", "AsyncHTTPTransport"}

# (file, function) -> how it is bounded. "policy": the function resolves through the tenant's policy.
CALL_SITES = {
    ("connectors/kinds/http.py", "guarded_request"): "policy",
    ("connectors/kinds/postgres.py", "_connect"): "policy",
    ("connectors/kinds/mysql.py", "_connect"): "policy",
    ("connectors/kinds/messaging.py", "send"): "policy",
    ("connectors/kinds/messaging.py", "test"): "policy",
    ("agents/llm/gateway.py", "_call_sync"): "policy",  # tenant base URLs: pinned resolution
    # The event loop's calls: the platform's configured providers only; a tenant policy is refused.
    ("agents/llm/gateway.py", "_call_async"): "policy",
    # The direct route on the loop's session; a tenant's base URL goes through guarded_request instead.
    ("agents/llm/gateway.py", "session"): "the platform's configured providers: _call_async refuses a "
    "tenant's base URL, which _call_sync sends through connectors.kinds.http.guarded_request",
    ("falcon/pgnotify.py", "_listen"): "the platform's own database (DATABASES): LISTEN for run changes",
    ("falcon/beat.py", "acquire"): "the platform's own database (DATABASES): the one-beat advisory lock",
    ("connectors/netguard.py", "_is_this_machine"): "binds a probe socket to ask if an address is local",
    # MCP servers (the SDK's client over httpx2): the transport resolves each request through the policy.
    ("connectors/kinds/mcp.py", "_session"): "policy",
    ("connectors/kinds/mcp.py", "scenario"): "policy",
    ("connectors/kinds/mcp.py", "__init__"): "policy",
}
PLATFORM_MODULES = {
    "billing/stripe_gateway.py": "Stripe at the operator's STRIPE_API_BASE: the platform's own account",
}


def _call_sites(root: Path = ROOT) -> dict[tuple[str, str], ast.FunctionDef]:
    found: dict[tuple[str, str], ast.FunctionDef] = {}
    for app in APPS:
        for path in (root / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            relative = str(path.relative_to(root))
            if relative in PLATFORM_MODULES:
                continue
            tree = ast.parse(path.read_text())
            imported = {
                alias.asname or alias.name.split(".")[0]
                for node in ast.walk(tree)
                if isinstance(node, ast.Import)
                for alias in node.names
                if alias.name.split(".")[0] in NETWORK_MODULES
            }
            for function in ast.walk(tree):
                if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                    continue
                for call in ast.walk(function):
                    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                        continue
                    owner = call.func.value
                    while isinstance(owner, ast.Attribute):
                        owner = owner.value
                    via_module = isinstance(owner, ast.Name) and owner.id in imported
                    lazy_litellm = isinstance(owner, ast.Name) and owner.id == "litellm"
                    if (via_module or lazy_litellm) and call.func.attr in OPENERS:
                        found[(relative, function.name)] = function  # type: ignore[assignment]
    return found


def test_every_outbound_call_site_is_known_and_goes_through_the_policy():
    sites = _call_sites()
    assert set(sites) == set(CALL_SITES), "review the new (or removed) outbound call site"
    for (path, name), how in CALL_SITES.items():
        if how != "policy":
            continue
        source = ast.unparse(sites[(path, name)])
        assert "policy" in source or "pinned_resolution" in source, f"{path}:{name} bypasses the policy"


def test_the_scan_finds_a_call_site_that_skips_the_policy(tmp_path):
    """The reader is not blind: a module opening a raw connection shows up."""
    (tmp_path / "connectors").mkdir()
    (tmp_path / "connectors" / "leaky.py").write_text(
        "import httpx\n\n\ndef leak(url):\n    return httpx.get(url)\n"
    )
    assert set(_call_sites(tmp_path)) == {("connectors/leaky.py", "leak")}
