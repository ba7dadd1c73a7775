"""OpenTelemetry traces of the request path (imported only when tracing is on).

One SERVER span per request, parented on the caller's W3C ``traceparent`` when it sends one;
INTERNAL children for ``auth``, ``routing``, ``admission`` and ``accounting``; one CLIENT child
per backend attempt, named ``{gen_ai.operation.name} {gen_ai.request.model}`` as the GenAI
semantic conventions ask, whose own trace context goes to the upstream in ``traceparent`` (see
``providers.propagation``). A failed attempt ends with ERROR status, ``error.type`` and a reason
built from the error's class, code and upstream status, never from its message (which may quote
the prompt). The answering attempt stays open until the answer is complete, streams included.

Attributes are metadata only: the GenAI conventions' ``gen_ai.*`` (operation, provider, request
and response model, max tokens, temperature, usage) and ``switchyard.*`` (route, rule,
sensitivity, task, deployment, fallbacks, cost, project, key id). Never a prompt, a completion or
a key.

Export: a batch processor over OTLP/HTTP protobuf, configured by ``telemetry.*`` in the config
and the standard ``OTEL_*`` variables. Finished spans go on an in-memory queue that a background
thread drains; when the collector is slow or unreachable the queue fills and spans are dropped,
and no request ever waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from typing import TYPE_CHECKING, Any, Self
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.propagate import get_global_textmap
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

from core.errors import GatewayError, UpstreamStatus
from gateway import __version__
from gateway.telemetry import OPERATIONS, QUIET, Quiet
from providers.propagation import ATTEMPT_HEADERS

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.runtime import Runtime
    from gateway.telemetry import Observed

log = logging.getLogger("switchyard.telemetry")
SHUTDOWN_WAIT_S = 5.0

# litellm model prefixes -> the GenAI conventions' well-known provider names
_LITELLM_PROVIDERS = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "anthropic": "anthropic",
    "azure": "azure.ai.openai",
    "azure_ai": "azure.ai.inference",
    "bedrock": "aws.bedrock",
    "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "mistral": "mistral_ai",
    "groq": "groq",
    "deepseek": "deepseek",
    "xai": "x_ai",
    "perplexity": "perplexity",
    "watsonx": "ibm.watsonx.ai",
}


class Tracing:
    """The tracer provider of one app, and where each request's trace begins."""

    def __init__(self, provider: TracerProvider) -> None:
        self.provider = provider
        self.tracer = provider.get_tracer("switchyard", __version__)
        self.propagator = get_global_textmap()  # OTEL_PROPAGATORS; W3C trace context by default
        self._deployments: weakref.WeakKeyDictionary[Runtime, dict[str, dict[str, Any]]] = weakref.WeakKeyDictionary()

    @classmethod
    def create(cls, config: GatewayConfig, span_processor: SpanProcessor | None = None) -> Tracing:
        """A provider with the config's (or the environment's) service name and sampler, exporting
        through ``span_processor`` or, by default, a batch processor over OTLP/HTTP protobuf."""
        provider = TracerProvider(resource=Resource.create(_resource_attributes(config)))  # sampler: OTEL_TRACES_SAMPLER
        if span_processor is None:
            span_processor = BatchSpanProcessor(_exporter(config))
        provider.add_span_processor(span_processor)
        _quieten_drops()
        return cls(provider)

    def begin(self, observed: Observed) -> RequestTrace:
        return RequestTrace(self, observed)

    def deployment_attributes(self, runtime: Runtime, deployment: str) -> dict[str, Any]:
        """A deployment's span attributes, worked out once per runtime (a reload makes a new one)."""
        known = self._deployments.get(runtime)
        if known is None:
            known = self._deployments[runtime] = {}
        attributes = known.get(deployment)
        if attributes is None:
            attributes = known[deployment] = _deployment_attributes(runtime, deployment)
        return attributes

    async def aclose(self) -> None:
        """Flush what is queued, waiting at most :data:`SHUTDOWN_WAIT_S` (a dead collector must not
        hold up shutdown)."""
        try:
            await asyncio.wait_for(asyncio.to_thread(self.provider.shutdown), SHUTDOWN_WAIT_S)
        except TimeoutError:
            log.warning("tracing: spans still queued after %.0fs at shutdown were dropped", SHUTDOWN_WAIT_S)


def _resource_attributes(config: GatewayConfig) -> dict[str, Any]:
    attributes: dict[str, Any] = {"service.version": __version__}
    if config.telemetry.service_name:
        attributes["service.name"] = config.telemetry.service_name
    elif not os.environ.get("OTEL_SERVICE_NAME") and "service.name=" not in os.environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        attributes["service.name"] = "switchyard"
    return attributes


def _exporter(config: GatewayConfig) -> Any:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    protocol = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol and protocol.strip() != "http/protobuf":
        log.warning("tracing: OTLP protocol %r is not available; exporting over http/protobuf", protocol)
    exporter = os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter not in ("", "otlp"):
        log.warning("tracing: OTEL_TRACES_EXPORTER=%s is not available; exporting over OTLP", exporter)
    endpoint = config.telemetry.otlp_endpoint
    if endpoint is not None and not endpoint.rstrip("/").endswith("/v1/traces"):
        endpoint = endpoint.rstrip("/") + "/v1/traces"
    return OTLPSpanExporter(endpoint=endpoint)  # None: OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT; headers, timeout too


class _OncePerMinute(logging.Filter):
    """Lets one record per message through each minute: a full span queue would otherwise log
    once per request."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[str, float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        now = time.monotonic()
        key = str(record.msg)
        if now - self._last.get(key, -60.0) < 60.0:
            return False
        self._last[key] = now
        return True


def _quieten_drops() -> None:
    target = logging.getLogger("opentelemetry.sdk._shared_internal")
    if not any(isinstance(f, _OncePerMinute) for f in target.filters):
        target.addFilter(_OncePerMinute())


# ------------------------------------------------------------------------------ one request


class RequestTrace:
    """The spans of one request (see the module docstring)."""

    __slots__ = ("answering", "attempts", "carrier", "context", "observed", "recording", "server", "trace_id", "tracing")

    def __init__(self, tracing: Tracing, observed: Observed) -> None:
        self.tracing = tracing
        self.observed: Observed | None = observed
        incoming, endpoint = observed.incoming, observed.endpoint
        parent = tracing.propagator.extract(incoming.headers)
        scope = incoming.scope
        self.server = tracing.tracer.start_span(
            f"{scope.get('method', 'POST')} {scope.get('path', '')}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": scope.get("method", "POST"),
                "url.path": scope.get("path", ""),
                "gen_ai.operation.name": OPERATIONS.get(endpoint, endpoint),
                "switchyard.request_id": incoming.request_id,
            },
        )
        self.context = trace.set_span_in_context(self.server, parent)
        self.answering: trace.Span | None = None
        self.attempts = 0
        context = self.server.get_span_context()
        self.trace_id: str | None = format(context.trace_id, "032x") if context.is_valid else None
        self.recording = self.server.is_recording()
        self.carrier: dict[str, str] | None = None  # the server span's context, for unsampled attempts

    def phase(self, name: str) -> _Phase | Quiet:
        if not self.recording:  # sampled out: children would not be recorded either
            return QUIET
        return _Phase(self, name)

    def attempt(self, deployment: str) -> _Attempt | _Propagate:
        self.attempts += 1
        if not self.recording:  # the upstream still learns the trace and that it is not sampled
            return _Propagate(self)
        return _Attempt(self, deployment, self.attempts)

    def attempt_span(self, deployment: str, number: int) -> trace.Span:
        exchange = self.observed.exchange if self.observed is not None else None
        operation = OPERATIONS.get(exchange.endpoint, "chat") if exchange is not None else "chat"
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": operation,
            "switchyard.deployment": deployment,
            "switchyard.attempt": number,
        }
        if exchange is not None:
            attributes.update(self.tracing.deployment_attributes(exchange.runtime, deployment))
        name = f"{operation} {attributes.get('gen_ai.request.model', deployment)}"
        return self.tracing.tracer.start_span(name, context=self.context, kind=SpanKind.CLIENT, attributes=attributes)

    def settled(self, observed: Observed, row: dict[str, Any]) -> None:
        """The answer is complete and accounted for: usage on the answering span, which ends."""
        span, self.answering = self.answering, None
        if span is None:
            return
        if span.is_recording():
            span.set_attributes(_usage_attributes(row))
            if row["status"] >= 400 or observed.error is not None:
                error = observed.error
                span.set_attribute("error.type", error.code if error is not None and error.code else str(row["status"]))
                span.set_status(Status(StatusCode.ERROR, _reason(error) if error is not None else f"HTTP {row['status']}"))
        span.end()

    def end(self, observed: Observed) -> None:
        """The response is complete: the request's attributes and status on the server span."""
        if self.answering is not None:  # never settled (e.g. the accounting failed)
            self.answering.end()
            self.answering = None
        span = self.server
        if span.is_recording():
            span.set_attributes(_request_attributes(self.tracing, observed))
            status = observed.status or 0
            if status >= 500:
                span.set_status(Status(StatusCode.ERROR, _reason(observed.error) if observed.error else f"HTTP {status}"))
        span.end()
        self.observed = None


class _Phase:
    """An INTERNAL child span around one step; a GatewayError ends it with ERROR and its code."""

    __slots__ = ("name", "span", "trace")

    def __init__(self, trace_: RequestTrace, name: str) -> None:
        self.trace, self.name = trace_, name

    def __enter__(self) -> Self:
        self.span = self.trace.tracing.tracer.start_span(self.name, context=self.trace.context)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is not None and self.span.is_recording():
            self.span.set_attribute("error.type", _error_type(exc))
            self.span.set_status(Status(StatusCode.ERROR, _reason(exc)))
        self.span.end()


class _Propagate:
    """An unsampled request's attempt: no span, the server span's context to the upstream."""

    __slots__ = ("token", "trace")

    def __init__(self, trace_: RequestTrace) -> None:
        self.trace = trace_

    def __enter__(self) -> Self:
        trace_ = self.trace
        if trace_.carrier is None:
            trace_.carrier = {}
            trace_.tracing.propagator.inject(trace_.carrier, context=trace_.context)
        self.token = ATTEMPT_HEADERS.set(trace_.carrier)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        ATTEMPT_HEADERS.reset(self.token)


class _Attempt:
    """A CLIENT span around one backend call; its trace context rides on the upstream request."""

    __slots__ = ("deployment", "number", "span", "token", "trace")

    def __init__(self, trace_: RequestTrace, deployment: str, number: int) -> None:
        self.trace, self.deployment, self.number = trace_, deployment, number

    def __enter__(self) -> Self:
        self.span = self.trace.attempt_span(self.deployment, self.number)
        carrier: dict[str, str] = {}
        self.trace.tracing.propagator.inject(carrier, context=trace.set_span_in_context(self.span, self.trace.context))
        self.token = ATTEMPT_HEADERS.set(carrier)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        ATTEMPT_HEADERS.reset(self.token)
        if exc is None:
            self.trace.answering = self.span  # ends when the answer is complete (settled)
            return
        if self.span.is_recording():
            self.span.set_attribute("error.type", _error_type(exc))
            if isinstance(exc, UpstreamStatus):
                self.span.set_attribute("http.response.status_code", exc.upstream_status)
            self.span.set_status(Status(StatusCode.ERROR, _reason(exc)))
        self.span.end()


def _error_type(exc: BaseException) -> str:
    if isinstance(exc, GatewayError) and exc.code:
        return exc.code
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return type(exc).__name__


def _reason(exc: BaseException) -> str:
    """Why something failed, from the error's class, code and status only: an error's message
    may quote the request, an upstream's may quote anything."""
    if isinstance(exc, UpstreamStatus):
        return f"{type(exc).__name__}: the upstream answered HTTP {exc.upstream_status} ({exc.code})"
    if isinstance(exc, GatewayError):
        return f"{type(exc).__name__}: {exc.code} (HTTP {exc.status})"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled: the client went away or the gateway is stopping"
    return type(exc).__name__


def _genai_provider(runtime: Runtime, deployment: str) -> str:
    profile = runtime.profiles.get(deployment)
    if profile is None:
        return "unknown"
    if profile.provider == "litellm":
        prefix = profile.model.split("/", 1)[0] if "/" in profile.model else "openai"
        return _LITELLM_PROVIDERS.get(prefix, prefix)
    if profile.provider == "llamacpp":
        return "llama.cpp"
    config = runtime.deployment_configs.get(deployment)
    host = urlsplit(config.base_url).hostname if config is not None and config.base_url else None
    return "openai" if host and host.endswith("openai.com") else profile.provider


def _upstream_model(provider: str, model: str) -> str:
    """The model name the backend itself knows (litellm's ``anthropic/`` prefix is litellm's)."""
    return model.split("/", 1)[1] if provider == "litellm" and "/" in model else model


def _deployment_attributes(runtime: Runtime, deployment: str) -> dict[str, Any]:
    profile = runtime.profiles.get(deployment)
    provider = _genai_provider(runtime, deployment)
    attributes: dict[str, Any] = {"gen_ai.provider.name": provider, "gen_ai.system": provider}
    if profile is not None:
        attributes["gen_ai.request.model"] = _upstream_model(profile.provider, profile.model)
        attributes["switchyard.locality"] = profile.locality
    config = runtime.deployment_configs.get(deployment)
    if config is not None and config.base_url:
        parts = urlsplit(config.base_url)
        if parts.hostname:
            attributes["server.address"] = parts.hostname
            attributes["server.port"] = parts.port or (443 if parts.scheme == "https" else 80)
    return attributes


def _usage_attributes(row: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = {
        "gen_ai.usage.input_tokens": row["prompt_tokens"],
        "gen_ai.usage.output_tokens": row["completion_tokens"],
        "switchyard.cost_usd": float(row["cost_usd"]),
    }
    if row.get("ttft_ms") is not None:
        attributes["switchyard.ttft_ms"] = row["ttft_ms"]
    return attributes


def _request_attributes(tracing: Tracing, observed: Observed) -> dict[str, Any]:
    attributes: dict[str, Any] = {"http.response.status_code": observed.status or 0}
    caller, plan, exchange, row = observed.caller, observed.plan, observed.exchange, observed.row
    if caller is not None:
        attributes["switchyard.project"] = caller.project
        attributes["switchyard.key_id"] = "master" if caller.is_master else (caller.key_id or "-")
    if plan is not None:
        attributes["switchyard.route"] = plan.route or "-"
        attributes["switchyard.rule"] = plan.rule or "-"
        attributes["switchyard.sensitivity"] = plan.signals.sensitivity.label
        attributes["switchyard.task"] = plan.signals.task
    if exchange is not None:
        body, sent = exchange.body, exchange.sent
        model = body.get("model")
        if isinstance(model, str):
            attributes["gen_ai.request.model"] = model[:128]
        answering = row["deployment"] if row is not None else exchange.walk.current
        effective = exchange.sent_to(answering) if answering else body  # with a rule's set: (gateway.shaping)
        for field, name in (("temperature", "gen_ai.request.temperature"), ("top_p", "gen_ai.request.top_p")):
            value = effective.get(field)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                attributes[name] = float(value)
        max_tokens = sent.get("max_completion_tokens") or sent.get("max_tokens")
        if type(max_tokens) is int:
            attributes["gen_ai.request.max_tokens"] = max_tokens
        attributes["switchyard.stream"] = bool(sent.get("stream"))
        walk = exchange.walk
        attributes["switchyard.fallbacks"] = walk.fallbacks
        attributes["switchyard.attempts"] = len(walk.attempts) + (1 if walk.answered else 0)
        deployment = row["deployment"] if row is not None else walk.current
        if deployment:
            attributes["switchyard.deployment"] = deployment
            known = tracing.deployment_attributes(exchange.runtime, deployment)
            attributes["gen_ai.provider.name"] = attributes["gen_ai.system"] = known["gen_ai.provider.name"]
            if walk.answered and "gen_ai.request.model" in known:
                attributes["gen_ai.response.model"] = known["gen_ai.request.model"]
    if row is not None:
        attributes.update(_usage_attributes(row))
    if observed.error is not None:
        attributes["error.type"] = _error_type(observed.error)
    return attributes
