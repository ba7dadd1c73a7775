"""Prometheus metrics: what each request cost and where it went, and the state of the queues.

Counters are fed as requests end (ledger rows, one per backend attempt; refusals; the request
itself), gauges are sampled from the gateway's state before every scrape. Names follow
Prometheus conventions: counters end in ``_total``, durations are ``_seconds``, money ``_usd``.

Several worker processes (``serve --workers N``) share one view: ``serve`` gives them a fresh
directory in ``PROMETHEUS_MULTIPROC_DIR`` and prometheus_client's multiprocess mode keeps every
value in a per-process file there, so a scrape answered by any worker adds up all of them.
Gauges say how they combine (in-flight requests and queues are summed over live workers, a
breaker counts as open when it is open in any worker, budgets show the freshest reading, which
the worker answering the scrape takes from the shared admission store), and each worker
re-samples its own state every :data:`SAMPLE_INTERVAL_S` so a scrape never waits on the others.
With one process the registry is private, so several apps in one process never clash.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import TYPE_CHECKING, Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client import values as _values

if TYPE_CHECKING:
    from gateway.config import ProjectConfig
    from gateway.state import GatewayState

log = logging.getLogger("switchyard.metrics")

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30)
_RATE_BUCKETS = (1, 2.5, 5, 10, 20, 35, 50, 75, 100, 150, 250, 500, 1000, 2500)
SAMPLE_INTERVAL_S = 1.0
BUDGET_READ_TIMEOUT_S = 2.0
_LEDGER_OUTCOMES = ("submitted", "written", "spooled", "replayed", "rejected")
# No `_created` twin of every counter: half the scrape, and nothing a dashboard reads.
disable_created_metrics()  # type: ignore[no-untyped-call]


class Children:
    """A metric family's labelled children, found in a plain dict. prometheus_client's
    ``labels()`` checks, converts and locks on every call; a child, once made, stays the same
    object for the family's lifetime (the gateway never removes a label set), so the request
    path asks the family only the first time it sees a combination."""

    __slots__ = ("children", "family")

    def __init__(self, family: Any) -> None:
        self.family = family
        self.children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self.children.get(values)
        if child is None:
            child = self.children[values] = self.family.labels(*values)
        return child


def multiprocess_mode() -> bool:
    """True when prometheus_client keeps values in ``PROMETHEUS_MULTIPROC_DIR`` (decided at import)."""
    return bool(getattr(_values.ValueClass, "_multiprocess", False))


class GatewayMetrics:
    """The gateway's metric families; see the module docstring."""

    def __init__(self) -> None:
        self.multiprocess = multiprocess_mode()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        # -- requests and routing
        self.requests = Counter(
            "switchyard_requests",
            "Requests served, by endpoint and HTTP status",
            ["endpoint", "status"],
            registry=r,
        )
        self.request_duration = Histogram(
            "switchyard_request_duration_seconds",
            "Whole requests, from arrival to the last byte (streams included)",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.decisions = Counter(
            "switchyard_routing_decisions",
            "Routing decisions by route, matched rule, sensitivity and task",
            ["route", "rule", "sensitivity", "task"],
            registry=r,
        )
        self.refusals = Counter(
            "switchyard_refusals",
            "Requests answered with an error before or instead of a backend",
            ["status", "code"],
            registry=r,
        )
        self.sensitivity = Counter(
            "switchyard_routed_by_sensitivity",
            "Answered requests by sensitivity and locality",
            ["sensitivity", "locality"],
            registry=r,
        )
        # -- backends
        self.attempts = Counter(
            "switchyard_backend_attempts",
            "Backend calls by outcome",
            ["deployment", "locality", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "switchyard_backend_latency_seconds",
            "Backend call latency",
            ["deployment", "streamed"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "switchyard_time_to_first_token_seconds",
            "From the start of the answering attempt to its first streamed chunk",
            ["deployment"],
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self.output_rate = Histogram(
            "switchyard_output_tokens_per_second",
            "Output tokens per second of generation (after the first token, for streams)",
            ["deployment"],
            buckets=_RATE_BUCKETS,
            registry=r,
        )
        self.fallbacks = Counter("switchyard_fallbacks", "Requests answered after a fallback", ["deployment"], registry=r)
        self.bad_usage = Counter(
            "switchyard_upstream_usage_rejected",
            "Upstream usage reports that were not usable and were counted instead",
            ["deployment"],
            registry=r,
        )
        # -- money
        self.tokens = Counter("switchyard_tokens", "Tokens billed", ["deployment", "kind"], registry=r)
        self.cost = Counter("switchyard_cost_usd", "Spend in USD", ["project", "deployment"], registry=r)
        self.budget_remaining = Gauge(
            "switchyard_budget_remaining_usd",
            "What is left of each project's budget this period (reservations held count as spent)",
            ["project"],
            multiprocess_mode="mostrecent",
            registry=r,
        )
        self.budget = Gauge(
            "switchyard_budget_usd",
            "Each project's budget for the period",
            ["project"],
            multiprocess_mode="mostrecent",
            registry=r,
        )
        # -- the process and its queues
        self.reloads = Counter("switchyard_config_reloads", "Config reloads applied (per worker process)", registry=r)
        self.auth_unavailable = Counter(
            "switchyard_auth_unavailable",
            "Requests refused because the key store could not be reached",
            registry=r,
        )
        self.in_flight = Gauge("switchyard_in_flight_requests", "Requests being served", multiprocess_mode="livesum", registry=r)
        self.circuit_open = Gauge(
            "switchyard_circuit_open",
            "1 while a deployment's circuit breaker is open",
            ["deployment"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.spend_capped = Gauge(
            "switchyard_spend_capped",
            "1 while a deployment is out of routing plans because a spend cap is reached",
            ["deployment"],
            multiprocess_mode="livemax",
            registry=r,
        )
        self.ledger_rows = Counter("switchyard_ledger_rows", "Ledger rows by what happened to them", ["outcome"], registry=r)
        self.ledger_queue = Gauge(
            "switchyard_ledger_queue_depth",
            "Ledger rows queued in memory, waiting for the database",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.ledger_spool = Gauge(
            "switchyard_ledger_spool_segments",
            "Journal segments holding rows the database has not taken yet",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.ledger_up = Gauge(
            "switchyard_ledger_database_up",
            "1 while the ledger database takes writes",
            multiprocess_mode="livemin",
            registry=r,
        )
        self.settlements_pending = Gauge(
            "switchyard_settlements_pending",
            "Admission tickets waiting to be settled",
            multiprocess_mode="livesum",
            registry=r,
        )
        self.settlements_dropped = Counter(
            "switchyard_settlements_dropped",
            "Admission tickets dropped after failing to settle repeatedly",
            registry=r,
        )
        # the families the request path labels, through their children's caches
        self._requests, self._request_duration = Children(self.requests), Children(self.request_duration)
        self._decisions, self._refusals = Children(self.decisions), Children(self.refusals)
        self._attempts, self._latency, self._tokens = Children(self.attempts), Children(self.latency), Children(self.tokens)
        self._cost, self._sensitivity, self._ttft = Children(self.cost), Children(self.sensitivity), Children(self.ttft)
        self._fallbacks, self._output_rate = Children(self.fallbacks), Children(self.output_rate)
        self._state: GatewayState | None = None
        self._seen: dict[str, float] = {}  # cumulative counters read from the state: what was added already
        self._sampler: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ fed by requests

    def observe_row(self, row: dict[str, Any]) -> None:
        deployment = row.get("deployment") or "-"
        status = int(row.get("status") or 0)
        locality = row.get("locality") or "-"
        self._attempts(deployment, locality, str(status)).inc()
        self._latency(deployment, "true" if row.get("streamed") else "false").observe((row.get("latency_ms") or 0) / 1000)
        if status != 200:
            return
        self._tokens(deployment, "prompt").inc(row.get("prompt_tokens") or 0)
        self._tokens(deployment, "completion").inc(row.get("completion_tokens") or 0)
        self._cost(row.get("project") or "-", deployment).inc(float(row.get("cost_usd") or 0))
        self._sensitivity(row.get("sensitivity") or "-", locality).inc()
        if row.get("ttft_ms") is not None:
            self._ttft(deployment).observe(row["ttft_ms"] / 1000)
        if row.get("fallbacks"):
            self._fallbacks(deployment).inc()

    def observe_generation(self, deployment: str, output_tokens: int, seconds: float) -> None:
        """An answer's output rate: ``output_tokens`` over ``seconds`` of generation."""
        if output_tokens > 0 and seconds > 0:
            self._output_rate(deployment).observe(output_tokens / seconds)

    def observe_request(self, endpoint: str, status: int, seconds: float) -> None:
        self._requests(endpoint, str(status)).inc()
        self._request_duration(endpoint).observe(seconds)

    def observe_decision(self, route: str | None, rule: str | None, sensitivity: str, task: str) -> None:
        self._decisions(route or "-", rule or "-", sensitivity, task).inc()

    def observe_bad_usage(self, deployment: str) -> None:
        self.bad_usage.labels(deployment).inc()

    def observe_auth_unavailable(self) -> None:
        self.auth_unavailable.inc()

    def observe_refusal(self, status: int, code: str | None) -> None:
        self._refusals(str(status), code or "-").inc()

    def observe_reload(self) -> None:
        self.reloads.inc()

    # ------------------------------------------------------------------ sampled from the state

    def watch(self, state: GatewayState) -> None:
        """Sample queue depths, breakers and budgets from ``state`` (before each scrape, and every
        second in each worker when several share the numbers)."""
        self._state = state
        if self.multiprocess and self._sampler is None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample_forever(), name="metrics-sampler")

    def sample(self) -> None:
        """Set the gauges from the state, and add to the counters what the state counted since."""
        state = self._state
        if state is None:
            return
        runtime = state.runtime
        self.in_flight.set(runtime.in_flight)
        live = getattr(state, "live", None)
        capped = live.spend.capped if live is not None else {}
        for name in runtime.profiles:
            self.circuit_open.labels(name).set(0 if state.breakers.healthy(name) else 1)
            self.spend_capped.labels(name).set(1 if name in capped else 0)
            self.fallbacks.labels(name)  # known deployments start at 0, so rate() and alerts see them at once
            self.bad_usage.labels(name)
        ledger = getattr(state.ledger, "stats", None)
        if ledger is not None:
            for outcome in _LEDGER_OUTCOMES:
                self._add(f"ledger.{outcome}", getattr(ledger, f"rows_{outcome}", 0), self.ledger_rows.labels(outcome))
            self.ledger_queue.set(ledger.queue_depth)
            self.ledger_spool.set(ledger.spool_segments)
            self.ledger_up.set(1 if ledger.database_available else 0)
        settler = getattr(state.accountant, "settler", None)
        if settler is not None:
            self.settlements_pending.set(settler.pending)
            self._add("settlements.dropped", settler.dropped, self.settlements_dropped)

    def _add(self, key: str, total: float, counter: Any) -> None:
        delta = total - self._seen.get(key, 0)
        if delta > 0:
            counter.inc(delta)
            self._seen[key] = total

    async def refresh(self) -> None:
        """Before a scrape: :meth:`sample`, and every project's budget, read from the admission
        store (shared by every worker and replica, so the freshest reading is the true one)."""
        self.sample()
        state = self._state
        if state is not None:
            projects = [p for p in state.config.projects if p.budget is not None]
            await asyncio.gather(*(self._read_budget(state, p) for p in projects))

    async def _read_budget(self, state: GatewayState, project: ProjectConfig) -> None:
        from gateway.admission import Subject

        assert project.budget is not None
        subject = Subject("project", project.name, project.budget.usd, project.budget.period)
        try:
            async with asyncio.timeout(BUDGET_READ_TIMEOUT_S):
                reading = await state.admission.budget_state(subject)
        except Exception as exc:  # noqa: BLE001 - a scrape reports what it can
            log.warning("metrics: the budget of project %s is unreadable (%s)", project.name, type(exc).__name__)
            return
        self.budget.labels(project.name).set(float(project.budget.usd))
        left = project.budget.usd - reading.spent_usd - reading.reserved_usd
        self.budget_remaining.labels(project.name).set(max(0.0, float(left)))

    async def _sample_forever(self) -> None:
        while True:
            try:
                self.sample()
            except Exception:  # sampling must never stop for one bad reading
                log.exception("sampling metrics failed")
            await asyncio.sleep(SAMPLE_INTERVAL_S)

    async def aclose(self) -> None:
        """Stop sampling; a worker leaving takes its live gauges out of the shared view."""
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        if self.multiprocess:
            from prometheus_client import multiprocess

            directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
            if directory:
                multiprocess.mark_process_dead(os.getpid(), directory)  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------------ exposition

    def render(self) -> bytes:
        self.sample()
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        combined = CollectorRegistry()
        multiprocess.MultiProcessCollector(combined)  # type: ignore[no-untyped-call]
        return generate_latest(combined)
