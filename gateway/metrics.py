"""Prometheus metrics: what each request cost and where it went, and the state of the queues.

Counters are fed from the ledger rows (one per backend attempt) and from refusals; gauges are
read at scrape time. Each worker process exposes its own numbers (scrape every worker, or run
one worker per container, as the Kubernetes manifests do).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class GatewayMetrics:
    """The gateway's metric families on a private registry (so apps in one process never clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.attempts = Counter(
            "switchyard_backend_attempts", "Backend calls by outcome", ["deployment", "locality", "status"], registry=self.registry
        )
        self.tokens = Counter("switchyard_tokens", "Tokens billed", ["deployment", "kind"], registry=self.registry)
        self.cost = Counter("switchyard_cost_usd", "Spend in USD", ["project", "deployment"], registry=self.registry)
        self.latency = Histogram(
            "switchyard_backend_latency_seconds", "Backend call latency", ["deployment", "streamed"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.ttft = Histogram(
            "switchyard_time_to_first_token_seconds", "Time to the first streamed chunk", ["deployment"],
            buckets=_LATENCY_BUCKETS, registry=self.registry,
        )
        self.fallbacks = Counter("switchyard_fallbacks", "Requests answered after a fallback", ["deployment"], registry=self.registry)
        self.refusals = Counter(
            "switchyard_refusals", "Requests answered with an error before or instead of a backend", ["status", "code"],
            registry=self.registry,
        )
        self.sensitivity = Counter(
            "switchyard_routed_by_sensitivity", "Answered requests by sensitivity and locality", ["sensitivity", "locality"],
            registry=self.registry,
        )
        self.info = Gauge("switchyard_config_reloads", "Config reloads applied (0 at start)", registry=self.registry)
        self.bad_usage = Counter(
            "switchyard_upstream_usage_rejected", "Upstream usage reports that were not usable and were counted instead",
            ["deployment"], registry=self.registry,
        )
        self.auth_unavailable = Counter(
            "switchyard_auth_unavailable", "Requests refused because the key store could not be reached", registry=self.registry
        )

    def observe_row(self, row: dict[str, Any]) -> None:
        deployment = row.get("deployment") or "-"
        status = int(row.get("status") or 0)
        self.attempts.labels(deployment, row.get("locality") or "-", str(status)).inc()
        self.latency.labels(deployment, "true" if row.get("streamed") else "false").observe((row.get("latency_ms") or 0) / 1000)
        if status != 200:
            return
        self.tokens.labels(deployment, "prompt").inc(row.get("prompt_tokens") or 0)
        self.tokens.labels(deployment, "completion").inc(row.get("completion_tokens") or 0)
        self.cost.labels(row.get("project") or "-", deployment).inc(float(row.get("cost_usd") or 0))
        self.sensitivity.labels(row.get("sensitivity") or "-", row.get("locality") or "-").inc()
        if row.get("ttft_ms") is not None:
            self.ttft.labels(deployment).observe(row["ttft_ms"] / 1000)
        if row.get("fallbacks"):
            self.fallbacks.labels(deployment).inc()

    def observe_bad_usage(self, deployment: str) -> None:
        self.bad_usage.labels(deployment).inc()

    def observe_auth_unavailable(self) -> None:
        self.auth_unavailable.inc()

    def observe_refusal(self, status: int, code: str | None) -> None:
        self.refusals.labels(str(status), code or "-").inc()

    def watch(self, state: Any) -> None:
        """Read queue depths and breaker state from the gateway's state at every scrape."""
        self.registry.register(_StateCollector(state))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self):  # noqa: ANN201 - prometheus_client's protocol
        state = self.state
        in_flight = GaugeMetricFamily("switchyard_in_flight_requests", "Requests being served")
        in_flight.add_metric([], state.runtime.in_flight)
        yield in_flight
        circuit = GaugeMetricFamily("switchyard_circuit_open", "1 while a deployment's circuit breaker is open", labels=["deployment"])
        for name in state.runtime.profiles:
            circuit.add_metric([name], 0 if state.breakers.healthy(name) else 1)
        yield circuit
        ledger = getattr(state.ledger, "stats", None)
        if ledger is not None:
            family = GaugeMetricFamily("switchyard_ledger", "Ledger writer counters", labels=["counter"])
            for field in ("rows_submitted", "rows_written", "rows_spooled", "rows_replayed", "rows_rejected", "queue_depth", "spool_segments"):
                family.add_metric([field], float(getattr(ledger, field, 0)))
            family.add_metric(["database_available"], 1.0 if getattr(ledger, "database_available", False) else 0.0)
            yield family
        settler = getattr(state.accountant, "settler", None)
        if settler is not None:
            pending = GaugeMetricFamily("switchyard_settlements_pending", "Admission tickets waiting to be settled")
            pending.add_metric([], settler.pending)
            yield pending
            dropped = CounterMetricFamily(
                "switchyard_settlements_dropped", "Admission tickets dropped after failing to settle repeatedly"
            )
            dropped.add_metric([], settler.dropped)
            yield dropped
