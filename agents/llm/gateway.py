"""The LLM gateway: the only module that imports litellm.

Turns an engine ``LlmRequest`` into one LiteLLM call against OpenAI, Anthropic, Gemini or Ollama (or the
offline ``sandbox/`` family), with the platform's credentials, and returns tokens, cost and latency.
Provider errors become ``LlmError`` with ``retryable`` set for 429, 5xx, timeouts and connection errors.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import copy
import functools
import json
import logging
import re
import ssl
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from agents.engine.spec import PROVIDERS, provider_of
from agents.engine.types import LlmError, LlmRequest, LlmResult, ToolCall
from agents.llm.models import ModelPrice
from billing.errors import QuotaExceeded
from billing.quotas import (
    UNREAD,
    AgentCap,
    Entitlement,
    Reservation,
    Settlement,
    quota_reserve,
    quota_settle,
    quota_settlement,
)
from connectors.errors import Blocked, ConnectorError
from connectors.kinds.http import guarded_request
from connectors.netguard import PUBLIC_ONLY, NetPolicy, pinned_resolution
from falcon import genai_semconv, jsonlimits, metrics, sql, tracing
from falcon.redaction import public_error

logger = logging.getLogger(__name__)
_import_lock = threading.Lock()
SANDBOX_LABEL = "[sandbox] "
# Any sandbox/<name> works; these are the names offered (the gallery's templates use the first).
SANDBOX_MODELS = ("sandbox/assistant", "sandbox/echo")
ANTHROPIC_DEFAULT_MAX_TOKENS = 4096


def _litellm() -> Any:
    """litellm, imported on first use (it takes seconds and is not needed to serve most requests)."""
    global _configured
    if _configured is not None:
        return _configured
    with _import_lock:
        import litellm

        litellm.suppress_debug_info = True
        litellm.telemetry = False
        for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy"):
            # Once: setLevel clears every logger's cache, milliseconds on each call.
            logging.getLogger(name).setLevel(logging.WARNING)
        _configured = litellm
        return litellm


_configured: Any = None


def warm_up(**_: Any) -> None:
    """Imports LiteLLM and makes one offline sandbox call before a worker takes its first task, so
    the first run pays for neither (LiteLLM imports more on its first completion)."""
    llm_complete(LlmRequest(model="sandbox/warm-up", messages=[{"role": "user", "content": "warm up"}]))
    for provider in sorted(DIRECT_PROVIDERS):  # LiteLLM's provider configurations, imported (not sent)
        with contextlib.suppress(Exception):
            _wire(provider, {"model": f"{provider}/warm-up", "messages": [], "api_key": "-", "timeout": 1})


def _litellm_model(model: str) -> str:
    # Ollama's chat endpoint (/api/chat) supports real tool calls; /api/generate only fakes them.
    return "ollama_chat/" + model.split("/", 1)[1] if model.startswith("ollama/") else model


def model_price(model: str) -> tuple[Decimal, Decimal] | None:
    """(USD per million input tokens, per million output tokens) from the admin-edited table, if listed."""
    row = sql.select_one(ModelPrice, ("input_usd_per_mtok", "output_usd_per_mtok"), "model = %s", [model])
    return (row[0], row[1]) if row else None


def structured_output_format(model: str, schema: dict[str, Any]) -> dict[str, Any]:
    """``response_format`` for one JSON object: the schema itself where LiteLLM says the model
    supports it, JSON mode otherwise (the caller validates the answer either way)."""
    try:
        supported = bool(_litellm().supports_response_schema(model=_litellm_model(model)))
    except Exception:
        supported = False
    if supported:
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    return {"type": "json_object"}


def model_check(model: str) -> str | None:
    """None when Falcon can call and price ``model``; otherwise why not (for workflow validation)."""
    provider = provider_of(model)
    if provider not in PROVIDERS or not model.split("/", 1)[1:] or not model.split("/", 1)[1]:
        return (
            f"unknown model {model!r}: use provider/model with a provider among "
            f"{', '.join(p for p in PROVIDERS if p != 'ollama_chat')}"
        )
    if provider in {"sandbox", "ollama", "ollama_chat"}:
        return None
    if model_price(model) is not None:
        return None
    try:
        _litellm().get_model_info(model)
    except Exception:
        return f"unknown model {model!r}: not in LiteLLM's model map nor in Falcon's price table"
    return None


def _credentials(provider: str) -> dict[str, str]:
    configured = settings.FALCON_LLM_PROVIDERS.get(provider, {})
    kwargs = {}
    if configured.get("api_key"):
        kwargs["api_key"] = configured["api_key"]
    if configured.get("api_base"):
        kwargs["api_base"] = configured["api_base"]
    return kwargs


def known_secrets() -> list[str]:
    """Credential values that must never reach a log or an API response."""
    return [c["api_key"] for c in settings.FALCON_LLM_PROVIDERS.values() if c.get("api_key")]


def example_for_schema(schema: dict[str, Any]) -> Any:
    """A deterministic value satisfying simple JSON Schemas, for the sandbox models."""
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0]
    if kind == "object" or "properties" in schema:
        return {name: example_for_schema(sub) for name, sub in schema.get("properties", {}).items()}
    if kind == "array":
        if "items" not in schema:
            return []
        return [example_for_schema(schema["items"])] * int(schema.get("minItems", 1))
    if kind == "integer":
        return int(schema.get("minimum", 0))
    if kind == "number":
        return float(schema.get("minimum", 0))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return "sandbox"


def _sandbox_text(request: LlmRequest) -> str:
    if request.json_schema is not None:
        return json.dumps(example_for_schema(request.json_schema))
    last = next((m.get("content") or "" for m in reversed(request.messages) if m.get("role") == "user"), "")
    return SANDBOX_LABEL + str(last)[:500]


@dataclass(frozen=True)
class Price:
    """What one model's tokens cost, read once per call: its estimate (the reservation) and its
    answer are priced alike, and the price table is read once, not twice."""

    input_usd_per_mtok: Decimal = Decimal(0)
    output_usd_per_mtok: Decimal = Decimal(0)
    tiered: str | None = None  # a LiteLLM model whose price depends on the call's size: priced per call
    unpriced: str | None = None  # a model neither the table nor LiteLLM's map prices: recorded as 0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        if self.tiered is not None:
            prompt_cost, completion_cost = _litellm().cost_per_token(
                model=self.tiered, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
            )
            return float(prompt_cost + completion_cost)
        if self.unpriced is not None:
            logger.warning("No price for model %s; cost recorded as 0", self.unpriced)
            return 0.0
        return float(
            (self.input_usd_per_mtok * prompt_tokens + self.output_usd_per_mtok * completion_tokens)
            / Decimal(1_000_000)
        )


FREE = Price()
# LiteLLM's token prices that are not one rate per token (tiers above a size, per character or second).
_NONLINEAR_PRICE = re.compile(r"_above_\d|per_character|per_second")


def price_of(model: str) -> Price:
    """The admin-edited table first (one read), then LiteLLM's map (memoised per model: it is static)."""
    provider = provider_of(model)
    if provider == "sandbox":
        return FREE
    row = sql.select_one(ModelPrice, ("input_usd_per_mtok", "output_usd_per_mtok"), "model = %s", [model])
    if row:
        return Price(row[0], row[1])
    if provider in {"ollama", "ollama_chat"}:
        return FREE
    return _litellm_price(_litellm_model(model))


@functools.lru_cache(maxsize=512)
def _litellm_price(litellm_model: str) -> Price:
    """LiteLLM's price for a model, as per-million rates when it is one rate per token (its own
    ``cost_per_token`` asked once for one token each way), else priced by LiteLLM on every call."""
    litellm = _litellm()
    try:
        info = litellm.get_model_info(litellm_model)
        input_cost, _ = litellm.cost_per_token(model=litellm_model, prompt_tokens=1, completion_tokens=0)
        _, output_cost = litellm.cost_per_token(model=litellm_model, prompt_tokens=0, completion_tokens=1)
    except Exception:
        return Price(unpriced=litellm_model)
    if any(_NONLINEAR_PRICE.search(key) and value for key, value in dict(info).items()):
        return Price(tiered=litellm_model)
    per_mtok = Decimal(1_000_000)
    return Price(Decimal(str(input_cost)) * per_mtok, Decimal(str(output_cost)) * per_mtok)


def _error_from(exc: Exception, model: str, extra_secrets: tuple[str, ...] = ()) -> LlmError:
    litellm = _litellm()
    status = getattr(exc, "status_code", None)
    message = public_error(getattr(exc, "message", None) or exc, [*known_secrets(), *extra_secrets])
    return _llm_error(
        model,
        message,
        status if isinstance(status, int) else None,
        timeout=isinstance(exc, litellm.Timeout),
        connection=isinstance(exc, litellm.APIConnectionError),
        rate_limited=isinstance(exc, litellm.RateLimitError),
        refused_key=isinstance(exc, litellm.AuthenticationError),
        retryable=isinstance(
            exc,
            (
                litellm.RateLimitError,
                litellm.Timeout,
                litellm.APIConnectionError,
                litellm.InternalServerError,
                litellm.ServiceUnavailableError,
                litellm.BadGatewayError,
            ),
        ),
    )


def _llm_error(
    model: str,
    message: str,
    status: int | None,
    *,
    timeout: bool = False,
    connection: bool = False,
    rate_limited: bool = False,
    refused_key: bool = False,
    retryable: bool = False,
) -> LlmError:
    """One failed call as the engine sees it: retryable for 429, 5xx, timeouts and lost connections."""
    retryable = retryable or timeout or connection or status == 429 or (status is not None and status >= 500)
    if timeout:
        code = "llm_timeout"
    elif rate_limited or status == 429:
        code = "llm_rate_limited"
    elif connection:
        code = "llm_connection_error"
    elif refused_key or status in (401, 403):
        code = "llm_authentication_failed"
    elif retryable:
        code = "llm_server_error"
    else:
        code = "llm_request_rejected"
    return LlmError(f"{model}: {message}", code=code, retryable=retryable, status_code=status)


# --- the direct route: LiteLLM's provider transformations, sent on Falcon's own connections ------------
#
# For these providers LiteLLM's provider configuration describes the whole exchange (URL, headers,
# body, and the answer back into LiteLLM's ``ModelResponse``). Falcon uses it and sends the request
# itself, which skips what ``litellm.completion`` adds around it and Falcon does not use: the logging
# object and its success callbacks, LiteLLM's own cost calculation (Falcon prices calls itself), the
# OpenAI SDK's request and response models. That was 4-12 ms of CPU per call (decision 0013, §15).
# Gemini and the offline sandbox still go through LiteLLM's ``completion``/``acompletion``.
DIRECT_PROVIDERS = frozenset({"openai", "anthropic", "ollama_chat"})
DEFAULT_API_BASES = {
    "openai": "https://api.openai.com/v1",
    "anthropic": "https://api.anthropic.com",
    "ollama_chat": "http://localhost:11434",
}
_KEYED_PROVIDERS = frozenset({"openai", "anthropic"})  # the others answer without a key
_DIRECT_PARAMS = ("temperature", "max_tokens", "tools", "response_format")
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # a provider's answer read into memory at most (then a failure)
_CONTENT_JSON = {"content-type": "application/json"}


class _NoLogging:
    """What LiteLLM's response transformations call on their logging object: nothing to do here."""

    model_call_details: dict[str, Any] = {}
    optional_params: dict[str, Any] = {}
    litellm_params: dict[str, Any] = {}

    def pre_call(self, *args: Any, **kwargs: Any) -> None:
        return None

    def post_call(self, *args: Any, **kwargs: Any) -> None:
        return None


_NO_LOGGING = _NoLogging()


@dataclass
class _Wire:
    """One provider request as LiteLLM's provider configuration shapes it, ready to send."""

    config: Any  # LiteLLM's chat configuration of the provider
    model: str  # the provider's own model name
    url: str
    headers: dict[str, str]
    body: bytes
    data: dict[str, Any]  # the request before encoding (the answer's transformation reads it)
    optional_params: dict[str, Any]
    json_mode: bool
    api_key: str | None
    timeout_s: float


@functools.lru_cache(maxsize=256)
def _optional_params_cached(provider: str, model: str, params: str) -> dict[str, Any]:
    return dict(
        _litellm().get_optional_params(
            model=model, custom_llm_provider=provider, drop_params=True, **json.loads(params)
        )
    )


def _optional_params(provider: str, model: str, params: str) -> dict[str, Any]:
    """LiteLLM's mapping of the call's parameters (temperature, max tokens, tools, response format)
    to the provider's: ~1 ms of LiteLLM per call, the same for the same parameters (it reads neither
    the messages nor the key), so it is worked out once per distinct (provider, model, parameters)
    and each call gets its own copy to shape."""
    return copy.deepcopy(_optional_params_cached(provider, model, params))


def _wire(provider: str, kwargs: dict[str, Any]) -> _Wire:
    """The request ``litellm.completion(**kwargs)`` would send to ``provider``."""
    litellm = _litellm()
    from litellm.litellm_core_utils.url_utils import ensure_api_route
    from litellm.utils import ProviderConfigManager

    model = kwargs["model"].split("/", 1)[1]
    messages = kwargs["messages"]
    api_key = kwargs.get("api_key") or None
    if provider in _KEYED_PROVIDERS and not api_key:
        raise _llm_error(
            kwargs["model"], "no API key is configured for this provider", None, refused_key=True
        )
    # As LiteLLM would: the given base URL, else the platform's for that provider, else the public one.
    platform = _credentials("ollama" if provider == "ollama_chat" else provider)
    api_base = kwargs.get("api_base") or platform.get("api_base") or DEFAULT_API_BASES[provider]
    if provider == "anthropic":
        api_base = ensure_api_route(api_base, "v1/messages")
    config = ProviderConfigManager.get_provider_chat_config(
        model=model, provider=litellm.LlmProviders(provider)
    )
    if config is None:
        raise _llm_error(kwargs["model"], "LiteLLM has no chat configuration for this provider", None)
    optional_params = _optional_params(
        provider, model, json.dumps({name: kwargs[name] for name in _DIRECT_PARAMS if name in kwargs})
    )
    json_mode = bool(optional_params.pop("json_mode", False))
    headers = config.validate_environment(
        headers={},
        model=model,
        messages=messages,
        optional_params=optional_params,
        litellm_params={},
        api_key=api_key,
        api_base=api_base,
    )
    url = config.get_complete_url(
        api_base=api_base,
        api_key=api_key,
        model=model,
        optional_params=optional_params,
        litellm_params={},
        stream=False,
    )
    data = config.transform_request(
        model=model, messages=messages, optional_params=optional_params, litellm_params={}, headers=headers
    )
    return _Wire(
        config,
        model,
        url,
        {**headers, **_CONTENT_JSON},
        json.dumps(data).encode(),
        data,
        optional_params,
        json_mode,
        api_key,
        float(kwargs["timeout"]),
    )


def _provider_message(status: int, body: bytes) -> str:
    """The provider's own words for a refused request (OpenAI, Anthropic and Ollama error shapes)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    found: Any = None
    if isinstance(parsed, dict):
        found = parsed.get("error", parsed.get("message"))
        if isinstance(found, dict):
            found = found.get("message")
    text = str(found) if found else body[:300].decode("utf-8", "replace").strip()
    return f"{text} (HTTP {status})" if text else f"HTTP {status}"


def _answered(call: _Call, wire: _Wire, status: int, headers: dict[str, str], body: bytes) -> Any:
    """The provider's answer as LiteLLM's ``ModelResponse`` (its provider transformation), or the
    failure it reports."""
    import httpx
    from litellm.types.utils import ModelResponse

    if status >= 400:
        message = public_error(_provider_message(status, body), [*known_secrets(), *call.secrets])
        raise _llm_error(call.request.model, message, status)
    # No request attached: the transformations read the answer's body and headers only (an
    # httpx.Request parsed the URL again on every call).
    raw = httpx.Response(status, content=body, headers=headers)
    return wire.config.transform_response(
        model=wire.model,
        raw_response=raw,
        model_response=ModelResponse(),
        logging_obj=_NO_LOGGING,
        request_data=wire.data,
        messages=call.kwargs["messages"],
        optional_params=wire.optional_params,
        litellm_params={},
        encoding=None,
        api_key=wire.api_key,
        json_mode=wire.json_mode,
    )


def _transport_error(call: _Call, exc: BaseException) -> LlmError:
    model = call.request.model
    if isinstance(exc, TimeoutError):
        return _llm_error(model, f"no answer within {call.request.timeout_s} s", None, timeout=True)
    message = public_error(str(exc) or type(exc).__name__, [*known_secrets(), *call.secrets])
    return _llm_error(model, f"could not reach the provider: {message}", None, connection=True)


# The connector layer's failures of one guarded exchange, as the engine's LLM failures.
_GUARDED_FAILURES = {"http_timeout": "timeout", "http_connection_error": "connection"}


def _send_guarded(call: _Call, wire: _Wire) -> Any:
    """A tenant's base URL: the one policy-bound exchange every tenant-aimed HTTP call uses
    (``connectors.kinds.http.guarded_request``: the checked address pinned, each redirect checked
    again and credentials kept from other origins, no proxy from the environment, a bounded read)."""
    assert call.policy is not None
    model = call.request.model
    try:
        status, headers, body = guarded_request(
            "POST",
            wire.url,
            policy=call.policy,
            headers=wire.headers,
            content=wire.body,
            timeout_s=wire.timeout_s,
            max_bytes=MAX_ANSWER_BYTES,
            secret_headers=frozenset({"x-api-key", "api-key"}),
        )
    except ConnectorError as exc:
        if exc.code == "destination_blocked":
            raise LlmError(f"{model}: {exc}", code="destination_blocked") from exc
        if exc.code == "response_too_large":
            raise _llm_error(model, "the provider's answer is too large", None) from exc
        kind = _GUARDED_FAILURES.get(exc.code)
        if kind == "timeout":
            raise _transport_error(call, TimeoutError()) from exc
        message = public_error(str(exc), [*known_secrets(), *call.secrets])
        raise _llm_error(model, message, None, connection=kind == "connection") from exc
    return _answered(call, wire, status, headers, body)


@functools.lru_cache(maxsize=64)
def _env_proxy(url: str) -> tuple[Any, Any]:
    """The proxy the environment names for a platform provider's URL (``HTTPS_PROXY``, ``NO_PROXY``),
    as LiteLLM's own client honoured it: read once per URL (a provider's is always the same).
    aiohttp's ``trust_env`` reads the environment (and ``~/.netrc``) on every request, in a thread
    each time."""
    from aiohttp.helpers import get_env_proxy_for_url
    from yarl import URL

    try:
        return get_env_proxy_for_url(URL(url))
    except LookupError:
        return None, None


async def _send_async(call: _Call, wire: _Wire) -> Any:
    """Sends on the event loop's session (the platform's configured providers only)."""
    import aiohttp

    proxy, proxy_auth = _env_proxy(wire.url)
    try:
        async with _loop.session().post(
            wire.url,
            data=wire.body,
            headers=wire.headers,
            timeout=aiohttp.ClientTimeout(total=wire.timeout_s),
            allow_redirects=False,
            proxy=proxy,
            proxy_auth=proxy_auth,
        ) as response:
            received = bytearray()
            async for chunk in response.content.iter_chunked(64 * 1024):
                received += chunk
                if len(received) > MAX_ANSWER_BYTES:
                    raise _llm_error(call.request.model, "the provider's answer is too large", None)
            status, headers, body = response.status, dict(response.headers), bytes(received)
    except TimeoutError as exc:
        raise _transport_error(call, TimeoutError()) from exc
    except (aiohttp.ClientError, OSError) as exc:
        raise _transport_error(call, exc) from exc
    return _answered(call, wire, status, headers, body)


@dataclass
class _Call:
    """One prepared LiteLLM call: its keyword arguments and the resolution guard it runs under."""

    request: LlmRequest
    litellm_model: str
    kwargs: dict[str, Any]
    secrets: tuple[str, ...]
    policy: NetPolicy | None  # a tenant's base URL: names resolved during the call are checked
    trace_parent: Any = None  # the caller's trace context (the call may wait on the event loop)
    price: Price | None = None  # read before the call (its reservation's), else when it is priced
    wire: _Wire | None = None  # the provider's request, sent by Falcon itself (DIRECT_PROVIDERS)


@dataclass
class Answer:
    """The provider's answer before pricing (pricing reads the price table: not on the event loop)."""

    call: _Call
    response: Any
    latency_ms: int


def _prepare(request: LlmRequest, credentials: dict[str, Any] | None, price: Price | None = None) -> _Call:
    _litellm()
    provider = provider_of(request.model)
    allowed = (credentials or {}).get("allowed_models") or []
    if allowed and request.model not in allowed:
        raise LlmError(
            f"{request.model} is not among the connector's allowed models", code="model_not_allowed"
        )
    litellm_model = _litellm_model(request.model)
    tenant_policy: NetPolicy | None = None
    kwargs: dict[str, Any] = {
        "messages": request.messages,
        "timeout": request.timeout_s,
        "num_retries": 0,
        "drop_params": True,
    }
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    if request.max_tokens is not None:
        kwargs["max_tokens"] = request.max_tokens
    elif provider == "anthropic":
        kwargs["max_tokens"] = ANTHROPIC_DEFAULT_MAX_TOKENS
    if request.tools:
        kwargs["tools"] = request.tools
    if request.response_format:
        kwargs["response_format"] = request.response_format
    if provider == "sandbox":
        # A real LiteLLM response with no network: deterministic and clearly labelled.
        kwargs.update(model="gpt-4o-mini", mock_response=_sandbox_text(request))
    elif credentials is not None:
        explicit = {"api_key": credentials.get("api_key"), "api_base": credentials.get("api_base")}
        kwargs.update(model=litellm_model, **{k: v for k, v in explicit.items() if v})
        if credentials.get("api_base"):
            # A tenant's base URL: checked now, and every name the SDK resolves during the call is
            # checked again and connected to as checked (no rebinding between check and connect).
            policy: NetPolicy = credentials.get("policy") or PUBLIC_ONLY
            try:
                policy.check_url(str(credentials["api_base"]))
            except Blocked as exc:
                raise LlmError(f"{request.model}: {exc}", code="destination_blocked") from exc
            tenant_policy = policy
    else:
        kwargs.update(
            model=litellm_model, **_credentials("ollama" if provider == "ollama_chat" else provider)
        )
    secrets = tuple(v for v in [(credentials or {}).get("api_key")] if v)
    parent = tracing.current() if tracing.enabled_here() else None
    call = _Call(request, litellm_model, kwargs, secrets, tenant_policy, parent, price)
    route = litellm_model.split("/", 1)[0]
    if provider != "sandbox" and route in DIRECT_PROVIDERS:
        try:
            call.wire = _wire(route, kwargs)
        except LlmError:
            raise
        except Exception as exc:  # LiteLLM refusing the parameters for this provider
            raise _error_from(exc, request.model, secrets) from exc
    return call


@contextlib.contextmanager
def _chat_span(call: _Call) -> Iterator[Any]:
    """The GenAI conventions' client span of one chat call (nothing when tracing is off); the provider's
    HTTP request is its child."""
    if not tracing.enabled_here():
        yield None
        return
    request = call.request
    attributes: dict[str, Any] = {
        genai_semconv.OPERATION_NAME: genai_semconv.OPERATION_CHAT,
        genai_semconv.PROVIDER_NAME: genai_semconv.provider_name(provider_of(request.model)),
        genai_semconv.REQUEST_MODEL: request.model.split("/", 1)[-1],
    }
    if request.max_tokens is not None:
        attributes[genai_semconv.REQUEST_MAX_TOKENS] = request.max_tokens
    if request.temperature is not None:
        attributes[genai_semconv.REQUEST_TEMPERATURE] = request.temperature
    span = tracing.start(
        genai_semconv.chat_span_name(request.model.split("/", 1)[-1]),
        attributes,
        parent=call.trace_parent,
        kind=SpanKind.CLIENT,
    )
    with tracing.within(trace.set_span_in_context(span, call.trace_parent)):
        try:
            yield span
        except LlmError as error:
            tracing.failed(span, error.code, str(error))
            raise
        finally:
            span.end()


def _chat_answered(span: Any, response: Any) -> None:
    if span is None:
        return
    usage = getattr(response, "usage", None)
    span.set_attribute(genai_semconv.USAGE_INPUT_TOKENS, int(getattr(usage, "prompt_tokens", 0) or 0))
    span.set_attribute(genai_semconv.USAGE_OUTPUT_TOKENS, int(getattr(usage, "completion_tokens", 0) or 0))
    if getattr(response, "model", None):
        span.set_attribute(genai_semconv.RESPONSE_MODEL, str(response.model))
    if getattr(response, "id", None):
        span.set_attribute(genai_semconv.RESPONSE_ID, str(response.id))
    reasons = [
        str(c.finish_reason) for c in getattr(response, "choices", []) if getattr(c, "finish_reason", None)
    ]
    if reasons:
        span.set_attribute(genai_semconv.RESPONSE_FINISH_REASONS, reasons)


def _call_sync(call: _Call) -> Answer:
    """A call to a tenant's base URL, in this thread, within the tenant's network policy."""
    if call.policy is None:  # the platform's providers wait on the event loop: see _Loop.start
        raise ValueError("only a call to a tenant's base URL runs in a thread")
    litellm = _litellm()
    started = time.monotonic()
    with _chat_span(call) as span:
        try:
            if call.wire is not None:
                response = _send_guarded(call, call.wire)
            else:
                with pinned_resolution(call.policy):  # every name LiteLLM resolves, checked and pinned
                    response = litellm.completion(**call.kwargs)
        except Exception as exc:
            error = exc if isinstance(exc, LlmError) else _error_from(exc, call.request.model, call.secrets)
            _count(call.request.model, error.code, latency_ms=int((time.monotonic() - started) * 1000))
            if error is exc:
                raise
            raise error from exc
        _chat_answered(span, response)
    return Answer(call, response, int((time.monotonic() - started) * 1000))


async def _call_async(call: _Call) -> Answer:
    """Only the platform's configured providers (and the offline sandbox) are called on the loop."""
    if call.policy is not None:  # pinned resolution patches a thread's name lookups: see _Loop.start
        raise ValueError("a call to a tenant's base URL must run in a thread under its network policy")
    litellm = _litellm()
    started = time.monotonic()
    with _chat_span(call) as span:
        try:
            if call.wire is not None:
                response = await _send_async(call, call.wire)
            else:
                response = await litellm.acompletion(**call.kwargs)
        except Exception as exc:
            error = exc if isinstance(exc, LlmError) else _error_from(exc, call.request.model, call.secrets)
            _count(call.request.model, error.code, latency_ms=int((time.monotonic() - started) * 1000))
            if error is exc:
                raise
            raise error from exc
        _chat_answered(span, response)
    return Answer(call, response, int((time.monotonic() - started) * 1000))


def llm_result(answer: Answer) -> LlmResult:
    """The answer as the engine sees it, priced (reads the price table: call it off the event loop)."""
    request, response = answer.call.request, answer.response
    message = response.choices[0].message
    tool_calls: list[ToolCall] = []
    for call in getattr(message, "tool_calls", None) or []:
        try:
            arguments = jsonlimits.loads(call.function.arguments or "{}")
        except ValueError:
            arguments = {"_raw": call.function.arguments}
        tool_calls.append(
            ToolCall(
                id=call.id or f"call_{len(tool_calls)}",
                name=call.function.name,
                arguments=arguments if isinstance(arguments, dict) else {"value": arguments},
            )
        )
    usage = getattr(response, "usage", None)
    prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
    completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
    result = LlmResult(
        text=message.content or "",
        model=request.model,
        provider=provider_of(request.model),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        cost_usd=(answer.call.price or price_of(request.model)).cost(prompt_tokens, completion_tokens),
        latency_ms=answer.latency_ms,
        tool_calls=tool_calls,
    )
    _count(request.model, "ok", result)
    return result


def _known_model(model: str) -> bool:
    """A model a metric label may name: one of LiteLLM's map (not whatever a tenant typed for its own
    Ollama server or base URL, which is ``other``). No database read: it runs on the event loop too."""
    if provider_of(model) == "sandbox":
        return True
    cost_map = _litellm().model_cost
    return model in cost_map or model.split("/", 1)[-1] in cost_map


def _count(model: str, outcome: str, result: LlmResult | None = None, latency_ms: int | None = None) -> None:
    provider = provider_of(model)
    label = metrics.model_label(model, _known_model)
    metrics.LLM_CALLS.labels(provider, label, outcome).inc()
    if result is not None:
        metrics.LLM_TOKENS.labels(provider, label, "input").inc(result.prompt_tokens)
        metrics.LLM_TOKENS.labels(provider, label, "output").inc(result.completion_tokens)
        metrics.LLM_COST.labels(provider, label).inc(result.cost_usd)
        latency_ms = result.latency_ms
    if latency_ms is not None:
        metrics.LLM_LATENCY.labels(provider, label).observe(latency_ms / 1000)


def llm_complete(request: LlmRequest, credentials: dict[str, Any] | None = None) -> LlmResult:
    """One completion, waited for in this thread (no retries here: the engine's retry policy decides).

    ``credentials`` (``api_key``, ``api_base``, ``allowed_models``) come from a tenant's provider
    connector; without them the platform's environment credentials are used.
    """
    return llm_result(_loop.start(_prepare(request, credentials)).result())


class _Loop:
    """One asyncio event loop thread per process, where LLM calls wait for their providers: hundreds
    in flight cost one thread, not one each (LiteLLM's async API; its clients are reused per loop)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._threads = ThreadPoolExecutor(max_workers=64, thread_name_prefix="falcon-llm")
        self._session: Any = None  # aiohttp.ClientSession, made and used on the loop's thread only
        self._session_loop: asyncio.AbstractEventLoop | None = None

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="falcon-llm-loop", daemon=True).start()
            return self._loop

    def session(self) -> Any:
        """The loop's HTTP session to the platform's providers (on the loop's thread: connections
        are kept and reused; as many at once as LiteLLM's own transport allows)."""
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._session_loop is not loop:
            import certifi

            tls = ssl.create_default_context(cafile=certifi.where())
            connector = aiohttp.TCPConnector(limit=1000, ssl=tls)
            self._session = aiohttp.ClientSession(connector=connector)  # proxies: _env_proxy
            self._session_loop = loop
            atexit.register(self._close_session, self._session, loop)
        return self._session

    @staticmethod
    def _close_session(session: Any, loop: asyncio.AbstractEventLoop) -> None:
        """At exit, closes the session on its loop while the loop still runs (else aiohttp warns)."""
        if loop.is_running() and not session.closed:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(session.close(), loop).result(timeout=2)

    def start(self, call: _Call) -> Future[Answer]:
        if call.policy is not None:
            # Pinned resolution patches this thread's name lookups: such calls run in a thread.
            return self._threads.submit(_call_sync, call)
        return asyncio.run_coroutine_threadsafe(_call_async(call), self.loop())


_loop = _Loop()


def llm_start(
    request: LlmRequest, credentials: dict[str, Any] | None = None, price: Price | None = None
) -> Future[Answer]:
    """Starts one completion and returns at once: a future of its ``Answer`` (``llm_result`` prices
    it, at ``price`` when the caller has read it already), or of an ``LlmError``. The caller keeps its
    own thread free to watch for cancellation."""
    return _loop.start(_prepare(request, credentials, price))


# --- quotas: every call reserves its estimate first and settles the real figures after ------------------

DEFAULT_COMPLETION_ESTIMATE = 1024


def llm_estimate(request: LlmRequest, price: Price | None = None) -> tuple[int, Decimal]:
    """Tokens and USD a call may use at most (roughly): the prompt's size plus the completion budget."""
    prompt = len(json.dumps([request.messages, request.tools or []], default=str)) // 4 + 1
    if request.max_tokens is not None:
        completion = request.max_tokens
    elif provider_of(request.model) == "anthropic":
        completion = ANTHROPIC_DEFAULT_MAX_TOKENS
    else:
        completion = DEFAULT_COMPLETION_ESTIMATE
    cost = (price or price_of(request.model)).cost(prompt, completion)
    return prompt + completion, Decimal(str(cost))


def llm_budget_reserve(
    request: LlmRequest,
    *,
    tenant_id: Any,
    agent_id: Any,
    own_credentials: bool,
    price: Price | None = None,
    entitlement: Entitlement | None = None,
    agent_cap_usd: AgentCap = UNREAD,
) -> Reservation:
    """Holds the call's estimate on the tenant's token quota, platform spend (when Falcon's keys pay)
    and spend caps; a refusal is a non-retryable ``quota_exceeded`` failure that stops the run."""
    tokens, cost = llm_estimate(request, price)
    platform = not own_credentials and provider_of(request.model) != "sandbox"
    try:
        return quota_reserve(
            entitlement or tenant_id,
            tokens=tokens,
            cost_usd=cost,
            platform=platform,
            agent_id=agent_id,
            agent_cap_usd=agent_cap_usd,
        )
    except QuotaExceeded as exc:
        raise LlmError(exc.message, code="quota_exceeded", retryable=False) from exc


def llm_budget_settle(reservation: Reservation, result: LlmResult | None) -> None:
    """Replaces the estimate by the call's real tokens and cost (nothing when it failed)."""
    if result is None:
        quota_settle(reservation, tokens=0, cost_usd=0)
    else:
        quota_settle(
            reservation, tokens=result.prompt_tokens + result.completion_tokens, cost_usd=result.cost_usd
        )


def llm_budget_settlement(reservation: Reservation, result: LlmResult) -> Settlement | None:
    """``llm_budget_settle`` as a statement for a caller that sends one of its own (a run's finishing
    statement), when the call stayed within its estimate; else settled now (None)."""
    return quota_settlement(
        reservation, tokens=result.prompt_tokens + result.completion_tokens, cost_usd=result.cost_usd
    )


def llm_probe(*, model: str, credentials: dict[str, Any]) -> dict[str, Any]:
    """The Test button of an LLM provider connector: one one-token call with its credentials."""
    result = llm_complete(
        LlmRequest(model=model, messages=[{"role": "user", "content": "ping"}], max_tokens=1, timeout_s=20),
        credentials=credentials,
    )
    return {"ok": True, "detail": f"{result.model} answered in {result.latency_ms} ms"}
