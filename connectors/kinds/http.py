"""HTTP APIs: base URL, default headers, five auth styles, a size cap, guarded redirects."""

from __future__ import annotations

import base64
import contextlib
import json
import threading
import time
from typing import Any, ClassVar
from urllib.parse import urljoin

import httpx

from connectors.errors import Blocked, ConnectorError
from connectors.kinds.base import Field, Kind, Resolved
from connectors.netguard import NetPolicy
from falcon import jsonlimits

MAX_REDIRECTS = 5
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
MAX_TIMEOUT_S = 120.0  # upper bounds a connector's configuration may not pass
MAX_RESPONSE_BYTES = 20 * 1024 * 1024
_token_cache: dict[tuple[str, str], tuple[str, float]] = {}
_token_lock = threading.Lock()


# Headers that carry credentials: never sent to another origin than the one they were meant for.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})


def _origin(url: httpx.URL) -> tuple[str, str, int]:
    return url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80)


def guarded_request(
    method: str,
    url: str,
    *,
    policy: NetPolicy,
    headers: dict[str, str] | None = None,
    params: dict[str, Any] | None = None,
    content: bytes | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = DEFAULT_MAX_BYTES,
    secret_headers: frozenset[str] = frozenset(),
    secret_params: frozenset[str] = frozenset(),
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP exchange within the tenant's network ``policy``; every redirect hop is resolved and
    checked again, at most ``MAX_REDIRECTS`` of them.

    The connection goes to the address that was checked (the URL's host is replaced by it) while the
    Host header and TLS SNI/certificate check keep the name, so rebinding DNS cannot redirect it. When a
    redirect leaves the original origin, credentials stay behind (as browsers and ``requests`` do): the
    ``Authorization``/``Cookie`` headers, the connector's ``secret_headers`` (an API-key header) and its
    ``secret_params`` (an API-key query parameter) are dropped.
    """
    headers = dict(headers or {})
    target = httpx.URL(url).copy_merge_params(params) if params else httpx.URL(url)
    origin = _origin(target)
    with httpx.Client(trust_env=False, follow_redirects=False, timeout=timeout_s) as client:
        for _ in range(MAX_REDIRECTS + 1):
            if target.scheme not in ("http", "https") or not target.host:
                raise ConnectorError(
                    f"only http(s) URLs are allowed, not {str(target)!r}", code="invalid_url"
                )
            if _origin(target) != origin:
                dropped = CREDENTIAL_HEADERS | {h.lower() for h in secret_headers}
                headers = {k: v for k, v in headers.items() if k.lower() not in dropped}
                if secret_params:
                    kept: list[tuple[str, str | int | float | bool | None]] = [
                        (k, v) for k, v in target.params.multi_items() if k not in secret_params
                    ]
                    target = target.copy_with(params=httpx.QueryParams(kept))
            port = target.port or (443 if target.scheme == "https" else 80)
            try:
                address = policy.resolve(target.host, port)
            except Blocked as exc:
                raise ConnectorError(str(exc), code="destination_blocked") from exc
            request_headers = {**headers, "Host": target.netloc.decode()}
            extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
            try:
                with client.stream(
                    method,
                    target.copy_with(host=str(address)),
                    headers=request_headers,
                    content=content,
                    extensions=extensions,
                ) as response:
                    if response.status_code in (301, 302, 303, 307, 308) and "location" in response.headers:
                        target = httpx.URL(urljoin(str(target), response.headers["location"]))
                        if response.status_code == 303 or (
                            response.status_code in (301, 302) and method != "GET"
                        ):
                            method, content = "GET", None
                        continue
                    body = b""
                    for chunk in response.iter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            raise ConnectorError(
                                f"the response is larger than {max_bytes} bytes", code="response_too_large"
                            )
                    return response.status_code, dict(response.headers), body
            except httpx.TimeoutException as exc:
                raise ConnectorError(
                    f"no answer within {timeout_s:g} s", code="http_timeout", retryable=True
                ) from exc
            except httpx.TransportError as exc:
                raise ConnectorError(
                    f"connection failed: {type(exc).__name__}", code="http_connection_error", retryable=True
                ) from exc
    raise ConnectorError(f"more than {MAX_REDIRECTS} redirects", code="too_many_redirects")


class HttpKind(Kind):
    name = "http"
    label = "HTTP API"
    step_types = ("http",)
    fields: ClassVar[tuple[Field, ...]] = (
        Field("base_url", required=True, description="e.g. https://api.example.com/v2"),
        Field("default_headers", "object", default={}, description="Sent with every request."),
        Field(
            "auth",
            choices=(
                "none",
                "bearer",
                "basic",
                "api_key_header",
                "api_key_query",
                "oauth2_client_credentials",
            ),
            default="none",
        ),
        Field("username", description="basic auth user"),
        Field("api_key_name", description="Header or query parameter carrying the API key."),
        Field("token_url", description="OAuth2 token endpoint (client credentials)."),
        Field("client_id", description="OAuth2 client id."),
        Field("scope", description="OAuth2 scope."),
        Field("timeout_s", "integer", default=30),
        Field("max_response_bytes", "integer", default=DEFAULT_MAX_BYTES),
        Field("token", secret=True, description="bearer token"),
        Field("password", secret=True, description="basic auth password"),
        Field("api_key", secret=True),
        Field("client_secret", secret=True, description="OAuth2 client secret"),
    )

    @classmethod
    def extra_problems(cls, config: dict[str, Any], secrets: dict[str, str]) -> dict[str, list[str]]:
        problems: dict[str, list[str]] = {}
        base = str(config.get("base_url", ""))
        if base and not base.startswith(("http://", "https://")):
            problems["config.base_url"] = ["Must start with http:// or https://."]
        for name, ceiling in (("timeout_s", MAX_TIMEOUT_S), ("max_response_bytes", MAX_RESPONSE_BYTES)):
            value = config.get(name)
            if isinstance(value, int) and not 1 <= value <= ceiling:
                problems[f"config.{name}"] = [f"Must be between 1 and {ceiling:g}."]
        return problems

    @classmethod
    def _auth(cls, connector: Resolved) -> tuple[dict[str, str], dict[str, str]]:
        config, secrets = connector.config, connector.secrets
        auth = config.get("auth", "none")
        if auth == "bearer":
            return {"Authorization": f"Bearer {secrets.get('token', '')}"}, {}
        if auth == "basic":
            pair = f"{config.get('username', '')}:{secrets.get('password', '')}".encode()
            return {"Authorization": "Basic " + base64.b64encode(pair).decode()}, {}
        if auth == "api_key_header":
            return {str(config.get("api_key_name") or "X-API-Key"): secrets.get("api_key", "")}, {}
        if auth == "api_key_query":
            return {}, {str(config.get("api_key_name") or "api_key"): secrets.get("api_key", "")}
        if auth == "oauth2_client_credentials":
            return {"Authorization": f"Bearer {cls._oauth_token(connector)}"}, {}
        return {}, {}

    @classmethod
    def _oauth_token(cls, connector: Resolved, *, refresh: bool = False) -> str:
        """Client-credentials token, cached until shortly before it expires."""
        cache_key = (connector.id, connector.secrets.get("client_secret", "")[-6:])
        with _token_lock:
            cached = _token_cache.get(cache_key)
        if cached and cached[1] > time.monotonic() and not refresh:
            return cached[0]
        form = {
            "grant_type": "client_credentials",
            "client_id": connector.config.get("client_id", ""),
            "client_secret": connector.secrets.get("client_secret", ""),
        }
        if connector.config.get("scope"):
            form["scope"] = connector.config["scope"]
        status, _, body = guarded_request(
            "POST",
            str(connector.config.get("token_url", "")),
            policy=connector.policy,
            headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"},
            content="&".join(f"{k}={httpx.QueryParams({k: v})[k]}" for k, v in form.items()).encode(),
        )
        try:
            payload = json.loads(body)
            token, expires_in = str(payload["access_token"]), float(payload.get("expires_in", 3600))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConnectorError(
                f"the token endpoint answered {status} without an access token", code="oauth2_token_failed"
            ) from exc
        with _token_lock:
            _token_cache[cache_key] = (token, time.monotonic() + max(0.0, expires_in - 30))
        return token

    @classmethod
    def request(cls, connector: Resolved, operation: dict[str, Any]) -> dict[str, Any]:
        config = connector.config
        auth_headers, auth_query = cls._auth(connector)
        path = str(operation.get("path") or "/")
        url = config["base_url"].rstrip("/") + "/" + path.lstrip("/") if path != "/" else config["base_url"]
        headers = {**config.get("default_headers", {}), **(operation.get("headers") or {}), **auth_headers}
        params = {**(operation.get("query") or {}), **auth_query}
        body = operation.get("json")
        content = None
        if body is not None:
            content = json.dumps(body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif operation.get("body") is not None:  # a raw body (form, XML, text) with the caller's Content-Type
            content = str(operation["body"]).encode()
        method = str(operation.get("method") or "GET").upper()
        # The connector's own limits, within the platform's, and never past the step's deadline.
        timeout = min(
            float(config.get("timeout_s") or DEFAULT_TIMEOUT_S),
            MAX_TIMEOUT_S,
            float(operation.get("timeout_s") or MAX_TIMEOUT_S),
        )
        max_bytes = min(int(config.get("max_response_bytes") or DEFAULT_MAX_BYTES), MAX_RESPONSE_BYTES)
        secret_headers = frozenset(auth_headers)
        secret_params = frozenset(auth_query)
        status, response_headers, raw = guarded_request(
            method,
            url,
            policy=connector.policy,
            secret_headers=secret_headers,
            secret_params=secret_params,
            headers=headers,
            params=params,
            content=content,
            timeout_s=timeout,
            max_bytes=max_bytes,
        )
        if status == 401 and config.get("auth") == "oauth2_client_credentials":
            headers["Authorization"] = f"Bearer {cls._oauth_token(connector, refresh=True)}"
            status, response_headers, raw = guarded_request(
                method,
                url,
                policy=connector.policy,
                secret_headers=secret_headers,
                secret_params=secret_params,
                headers=headers,
                params=params,
                content=content,
                timeout_s=timeout,
                max_bytes=max_bytes,
            )
        parsed: Any = raw.decode("utf-8", errors="replace")
        if "json" in response_headers.get("content-type", ""):
            with contextlib.suppress(ValueError):
                parsed = jsonlimits.loads(raw)
        if status == 429 or status >= 500:
            raise ConnectorError(
                f"the API answered {status}", code=f"http_{status}", retryable=True, status_code=status
            )
        return {"status": status, "headers": response_headers, "body": parsed}

    @classmethod
    def test(cls, connector: Resolved) -> dict[str, Any]:
        result = cls.request(connector, {"method": "GET", "path": "/"})
        return {
            "ok": result["status"] < 400,
            "detail": f"GET {connector.config['base_url']} -> {result['status']}",
        }

    @classmethod
    def call(cls, connector: Resolved, step_type: str, operation: dict[str, Any]) -> Any:
        if step_type != "http":
            return super().call(connector, step_type, operation)
        return cls.request(connector, operation)
