"""One routed request, from admission to its ledger rows.

An :class:`Exchange` is opened once a request is authenticated, checked, planned and admitted.
It carries all of that, the executor's :class:`~gateway.executor.Walk` through the plan, and
ends in exactly one :meth:`Exchange.finish`, however the request ended: a JSON reply, a stream
that completed or broke, every backend failing, or a client that went away. ``finish`` is the
one place where in-flight requests are counted down, usage is validated or counted, the cost is
computed, the reservation is settled or released, and the ledger rows are built and queued.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from core.errors import GatewayError, ShuttingDown, UpstreamError
from core.literals import Endpoint
from core.wire import TokenUsage
from gateway.accounting import Admitted, cost_usd, ledger_row
from gateway.auth import Caller
from gateway.executor import Walk
from gateway.shaping import shaped
from routing.types import Plan

if TYPE_CHECKING:
    from gateway.runtime import Runtime
    from gateway.state import GatewayState
    from gateway.telemetry import Observed

CLIENT_CLOSED = 499  # nginx's status for "the client closed the connection before the answer"


@dataclass(slots=True)
class Ending:
    """How a request ended, as far as the part that served it knows."""

    reported_usage: Any = None  # the upstream's usage object, if it sent one
    text: str = ""  # what was generated, counted when the usage is missing or invalid
    error: GatewayError | None = None  # what the client got instead of a complete answer
    client_gone: bool = False
    ttft_ms: float | None = None
    streamed: bool = False


@dataclass(slots=True)
class Exchange:
    """Everything one routed request carries; see the module docstring."""

    state: GatewayState
    runtime: Runtime
    request_id: str
    caller: Caller
    endpoint: Endpoint
    body: dict[str, Any]  # as the client sent it
    sent: dict[str, Any]  # what the backends receive
    plan: Plan
    admitted: Admitted
    observed: Observed  # the request log's and the trace's view of it
    walk: Walk = field(default_factory=Walk)
    started: float = field(default_factory=time.perf_counter)
    project_tag: str | None = None  # the caller's x-switchyard-project-tag, for the ledger
    finished: bool = False
    cost: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        self.runtime.in_flight += 1

    def sent_to(self, deployment: str) -> dict[str, Any]:
        """What one attempt on ``deployment`` sends: ``sent`` plus the matched rule's ``set:``
        parameters that deployment takes (gateway.shaping), decided attempt by attempt."""
        if not self.plan.parameters:
            return self.sent
        return shaped(self.sent, self.plan.parameters, self.endpoint, self.runtime.deployment_configs.get(deployment))

    @property
    def output_limit(self) -> int | None:
        """The most output tokens the backend may bill for (max_tokens times choices), if bounded."""
        limit = self.sent.get("max_completion_tokens") or self.sent.get("max_tokens")
        if type(limit) is not int:
            return None
        choices = self.sent.get("n")
        return limit * (choices if type(choices) is int and choices > 0 else 1)

    async def finish(self, ending: Ending) -> Decimal:
        """Account for the request once: settle or release, queue its ledger rows; returns the cost."""
        if self.finished:
            return self.cost
        self.finished = True
        with self.observed.trace.phase("accounting"):
            return await self._account(ending)

    async def _account(self, ending: Ending) -> Decimal:
        try:
            accountant = self.state.accountant
            walk = self.walk
            for attempt in walk.attempts:
                accountant.record(
                    self._row(
                        attempt.deployment,
                        None,
                        Decimal(0),
                        attempt.error.status,
                        attempt.elapsed_ms,
                        error=attempt.error,
                        streamed=ending.streamed,
                    )
                )
            deployment = walk.current
            if deployment is None:  # no backend answered, or none was reached
                await accountant.release(self.admitted)
                return self.cost
            profile = self.runtime.profiles[deployment]
            if walk.answered:
                status = 200 if ending.error is None else ending.error.status
                if isinstance(ending.error, UpstreamError) and ending.error.backend_fault:
                    self.state.breakers.record_failure(deployment)  # a stream that broke mid-way
                error_type = None
            elif ending.client_gone:  # the client left while this deployment was working on it
                status, error_type = CLIENT_CLOSED, "client_closed"
            else:  # the server ended it (the drain deadline) while this deployment was working on it
                status, error_type = ShuttingDown.status, ShuttingDown.code
            usage = accountant.usage_of(
                ending.reported_usage, self.sent, ending.text, profile.model, self.output_limit, deployment
            )
            self.cost = cost_usd(profile.prices, usage)
            await accountant.settle(self.admitted, self.cost, usage.total)
            row = self._row(
                deployment,
                usage,
                self.cost,
                status,
                (time.perf_counter() - self.started) * 1000,
                error=ending.error,
                error_type=error_type,
                ttft_ms=ending.ttft_ms,
                streamed=ending.streamed,
                fallbacks=walk.fallbacks,
            )
            accountant.record(row)
            self.observed.settled(row, ending)
            return self.cost
        finally:
            self.runtime.in_flight -= 1

    def _row(
        self,
        deployment: str,
        usage: TokenUsage | None,
        cost: Decimal,
        status: int,
        latency_ms: float,
        *,
        error: GatewayError | None = None,
        error_type: str | None = None,
        ttft_ms: float | None = None,
        streamed: bool = False,
        fallbacks: int = 0,
    ) -> dict[str, Any]:
        return ledger_row(
            request_id=self.request_id,
            caller=self.caller,
            body=self.body,
            plan=self.plan,
            runtime=self.runtime,
            deployment=deployment,
            usage=usage,
            cost=cost,
            status=status,
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            streamed=streamed,
            fallbacks=fallbacks,
            error=error,
            error_type=error_type,
            project_tag=self.project_tag,
        )
