"""What the gateway tells operators about each request: one request-log line, the request's
metrics and, when tracing is on, its spans.

The request path holds one :class:`Observed` per request and calls a few hooks on it: a
``phase`` around auth, routing, admission and accounting, an ``attempt`` around each backend
call (``gateway.executor``), ``settled`` once the ledger row is built (``gateway.exchange``) and
``end`` when the response is complete (``gateway.proxy.serve``).

Tracing off (the default) means :data:`UNTRACED` behind those hooks: each is one call that
returns a shared do-nothing context manager; OpenTelemetry is not even imported. Tracing on
means a :class:`gateway.telemetry_otel.RequestTrace` behind them. Neither ever sees a prompt, a
completion or a key: spans and request-log lines are built from the request's metadata only, and
the bodies reach the log only with ``logging.include_bodies``, masked by the detectors.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, Self

from core.errors import GatewayError
from gateway.asgi import Incoming, Message, Send
from gateway.logs import REQUEST_LOGGER, log_request, scrub

if TYPE_CHECKING:
    from gateway.auth import Caller
    from gateway.config import GatewayConfig
    from gateway.exchange import Ending, Exchange
    from gateway.metrics import GatewayMetrics
    from gateway.telemetry_otel import Tracing
    from routing.detectors import DetectorSet
    from routing.types import Plan

CLIENT_CLOSED = 499
LOGGED = "request_logged"  # set in the ASGI scope's state once a request has its line (gateway.app)
UNLOGGED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})  # probes and scrapes: noise in a request log
OPERATIONS = {"chat": "chat", "completions": "text_completion", "embeddings": "embeddings"}
_MAX_LOGGED_STRINGS = 200


class Quiet:
    """A context manager that does nothing (one instance serves every untraced request)."""

    __slots__ = ()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


QUIET = Quiet()


class Untraced:
    """The trace hooks of a request when tracing is off: one call each, nothing done."""

    __slots__ = ()
    trace_id: str | None = None

    def phase(self, name: str) -> Quiet:
        return QUIET

    def attempt(self, deployment: str) -> Quiet:
        return QUIET

    def settled(self, observed: Observed, row: dict[str, Any]) -> None:
        return None

    def end(self, observed: Observed) -> None:
        return None


UNTRACED = Untraced()


class Observed:
    """One request as the telemetry sees it, filled in as it is served."""

    __slots__ = (
        "caller",
        "completion",
        "endpoint",
        "error",
        "exchange",
        "incoming",
        "plan",
        "row",
        "started",
        "status",
        "telemetry",
        "trace",
    )

    def __init__(self, telemetry: Telemetry, incoming: Incoming, endpoint: str, trace: Any = UNTRACED) -> None:
        self.telemetry = telemetry
        self.trace = trace
        self.incoming = incoming
        self.endpoint = endpoint
        self.started = time.perf_counter()
        self.status: int | None = None
        self.caller: Caller | None = None
        self.plan: Plan | None = None
        self.exchange: Exchange | None = None
        self.row: dict[str, Any] | None = None  # the answering deployment's ledger row
        self.error: GatewayError | None = None
        self.completion: str | None = None  # kept only when bodies are logged

    @property
    def request_id(self) -> str:
        return self.incoming.request_id

    def watch(self, send: Send) -> Callable[[Message], Awaitable[None]]:
        """``send``, noting the response's status on the way."""

        async def watching(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]
            await send(message)

        return watching

    def refused(self, error: GatewayError) -> None:
        self.error = error

    def settled(self, row: dict[str, Any], ending: Ending) -> None:
        """The exchange built the answering deployment's ledger row (``gateway.exchange``)."""
        self.row = row
        if ending.error is not None:
            self.error = ending.error
        exchange = self.exchange
        if exchange is not None and row["status"] == 200 and exchange.walk.answered:
            seconds = time.perf_counter() - exchange.walk.attempt_started
            ttft = (row.get("ttft_ms") or 0) / 1000 if ending.streamed else 0.0
            self.telemetry.metrics.observe_generation(row["deployment"], row["completion_tokens"], seconds - ttft)
        if self.telemetry.bodies_logged(exchange):
            self.completion = ending.text
        self.trace.settled(self, row)

    def end(self) -> None:
        """The response is complete (or abandoned): metrics, the request-log line, the trace."""
        seconds = time.perf_counter() - self.started
        if self.status is None:  # nothing was sent: the client left (serve says 500 when it was an error)
            self.status = CLIENT_CLOSED
        telemetry = self.telemetry
        self.incoming.scope.setdefault("state", {})[LOGGED] = True
        telemetry.metrics.observe_request(self.endpoint, self.status, seconds)
        plan = self.plan
        if plan is not None:
            telemetry.metrics.observe_decision(plan.route, plan.rule, plan.signals.sensitivity.label, plan.signals.task)
        try:
            if telemetry.request_log.isEnabledFor(logging.INFO):
                log_request(telemetry.request_log, self.fields(seconds))
        finally:
            self.trace.end(self)
            self.exchange = None  # the exchange points here too: no cycle left behind

    def fields(self, seconds: float) -> dict[str, Any]:
        """The request-log line: metadata only (bodies masked, and only when configured)."""
        caller, plan, exchange, row = self.caller, self.plan, self.exchange, self.row
        fields: dict[str, Any] = {
            "request_id": self.request_id,
            "method": self.incoming.scope.get("method"),
            "path": self.incoming.scope.get("path"),
            "status": self.status,
            "latency_ms": round(seconds * 1000, 3),
            "key_id": None if caller is None else ("master" if caller.is_master else caller.key_id),
            "project": None if caller is None else caller.project,
        }
        if exchange is not None:
            fields["stream"] = bool(exchange.sent.get("stream"))
        if plan is not None:  # a planned request named a configured route or deployment: safe to log
            fields["model"] = plan.requested_model
            fields["route"], fields["rule"] = plan.route, plan.rule
            fields["sensitivity"], fields["task"] = plan.signals.sensitivity.label, plan.signals.task
        if exchange is not None:
            walk = exchange.walk
            fields["deployment"] = row["deployment"] if row else walk.current
            fields["attempts"] = len(walk.attempts) + (1 if walk.answered else 0)
            fields["fallbacks"] = walk.fallbacks
        if row is not None:
            fields["prompt_tokens"] = row["prompt_tokens"]
            fields["completion_tokens"] = row["completion_tokens"]
            fields["cost_usd"] = float(row["cost_usd"])
            if row.get("ttft_ms") is not None:
                fields["ttft_ms"] = row["ttft_ms"]
        if self.error is not None:
            fields["error"] = self.error.code
        if self.trace.trace_id is not None:
            fields["trace_id"] = self.trace.trace_id
        if exchange is not None and self.telemetry.bodies_logged(exchange):
            detectors = self.telemetry.detectors(exchange.runtime.config)
            limit = exchange.runtime.config.logging.max_body_chars
            fields["request_body"] = masked(exchange.body, detectors, limit)
            if self.completion:
                fields["completion"] = masked(self.completion, detectors, limit)
        return fields


class Telemetry:
    """The request log, request metrics and (optionally) tracing of one gateway app."""

    def __init__(self, metrics: GatewayMetrics, tracing: Tracing | None = None) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.request_log = logging.getLogger(REQUEST_LOGGER)
        self._detectors: tuple[GatewayConfig, DetectorSet] | None = None

    def observe(self, incoming: Incoming, endpoint: str) -> Observed:
        """Start observing one request (its server span starts now when tracing is on)."""
        tracing = self.tracing
        if tracing is None:  # the one check the request path pays for tracing being off
            return Observed(self, incoming, endpoint)
        observed = Observed(self, incoming, endpoint)
        observed.trace = tracing.begin(observed)
        return observed

    def served(self, scope: MutableMapping[str, Any], status: int, seconds: float) -> None:
        """A request-log line for a request no :class:`Observed` logged: the admin API, models,
        docs, token counting, a model route refused before it was served."""
        path = scope.get("path", "")
        if path in UNLOGGED_PATHS or not self.request_log.isEnabledFor(logging.INFO):
            return
        fields = {
            "request_id": scope.get("state", {}).get("request_id"),
            "method": scope.get("method"),
            "path": scrub(path),  # a path can carry anything a client typed, keys included
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
        }
        log_request(self.request_log, fields)

    def bodies_logged(self, exchange: Exchange | None) -> bool:
        return (
            exchange is not None
            and exchange.runtime.config.logging.include_bodies
            and self.request_log.isEnabledFor(logging.INFO)
        )

    def detectors(self, config: GatewayConfig) -> DetectorSet:
        """The config's own detectors (admin-defined ones included), compiled once per config."""
        cached = self._detectors
        if cached is None or cached[0] is not config:
            from routing.detectors import compile_detectors

            cached = self._detectors = (config, compile_detectors(config.sensitivity))
        return cached[1]

    async def aclose(self) -> None:
        if self.tracing is not None:
            await self.tracing.aclose()


def masked(value: Any, detectors: DetectorSet, limit: int) -> Any:
    """``value`` (a JSON body or a text) with every string scrubbed and cut to ``limit`` characters.

    A string is masked a little past ``limit`` before it is cut, so a secret that straddles the cut
    is found whole and never left half visible."""
    budget = [_MAX_LOGGED_STRINGS]

    def one(text: str) -> str:
        if budget[0] <= 0:
            return "..."
        budget[0] -= 1
        if len(text) > limit:
            return scrub(text[: limit + 512], detectors)[:limit] + "..."
        return scrub(text, detectors)

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            return one(node)
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        return node

    return walk(value)


def tracing_wanted(config: GatewayConfig, environ: dict[str, str] | None = None) -> bool:
    """Tracing is on when an OTLP endpoint is configured (YAML or the standard variables) and
    neither ``telemetry.enabled: false`` nor ``OTEL_SDK_DISABLED`` / ``OTEL_TRACES_EXPORTER=none``
    turns it off."""
    env = os.environ if environ is None else environ
    if not config.telemetry.enabled or env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return False
    return bool(
        config.telemetry.otlp_endpoint
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def start_telemetry(config: GatewayConfig, metrics: GatewayMetrics, span_processor: Any = None) -> Telemetry:
    """The app's telemetry; tracing is set up (and OpenTelemetry imported) only when wanted, or
    when a test hands in its own ``span_processor``."""
    if span_processor is None and not tracing_wanted(config):
        return Telemetry(metrics)
    from gateway.telemetry_otel import Tracing

    return Telemetry(metrics, Tracing.create(config, span_processor))
