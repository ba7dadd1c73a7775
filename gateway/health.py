"""Per-deployment circuit breakers, fed by the executor's outcomes and read by the router.

A deployment that fails ``failure_threshold`` times in a row is taken out of plans for
``cooldown_s``; after that requests reach it again, and a single failure re-opens the circuit.

Everything the request path calls here is synchronous and in memory. With ``redis_url`` set the
breakers also share what they learn with the other replicas (:mod:`gateway.health_sync`):
outcomes go out to Redis in the background, and the circuits that any replica opened come back
as a local copy refreshed every ``circuit_breaker.sync_interval_s``. A deployment is skipped when
this replica's own breaker or the shared one is open. When Redis is slow or down, each replica
goes on with its own breakers.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.config import GatewayConfig


class SharedHealth(Protocol):
    """Breaker state shared with other replicas; every method but start/aclose is in memory."""

    def is_open(self, deployment: str) -> bool: ...

    def open_deployments(self) -> Iterable[str]: ...

    def failed(self, deployment: str, failure_threshold: int, cooldown_s: float) -> None: ...

    def succeeded(self, deployment: str) -> None: ...

    async def start(self) -> None: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    open_until: float = 0.0


class CircuitBreakers:
    """Health snapshot for the router, fed by the executor's outcomes."""

    def __init__(
        self,
        failure_threshold: int = 5,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedHealth | None = None,
    ) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self.shared = shared
        self._clock = clock
        self._breakers: dict[str, _Breaker] = {}

    def configure(self, failure_threshold: int, cooldown_s: float) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s

    def healthy(self, deployment: str) -> bool:
        return self._locally_healthy(deployment) and (self.shared is None or not self.shared.is_open(deployment))

    def _locally_healthy(self, deployment: str) -> bool:
        breaker = self._breakers.get(deployment)
        if breaker is None or breaker.failures < self.failure_threshold:
            return True
        # After the cooldown requests flow again (half-open); one more failure re-opens it at once.
        return self._clock() >= breaker.open_until

    def snapshot(self) -> dict[str, bool]:
        """Deployments currently out of service (missing names are healthy)."""
        down = {name: False for name in self._breakers if not self._locally_healthy(name)}
        if self.shared is not None:
            down.update((name, False) for name in self.shared.open_deployments())
        return down

    def record_success(self, deployment: str) -> None:
        breaker = self._breakers.get(deployment)
        if breaker is not None:
            breaker.failures = 0
        if self.shared is not None:
            self.shared.succeeded(deployment)

    def record_failure(self, deployment: str) -> None:
        breaker = self._breakers.setdefault(deployment, _Breaker())
        breaker.failures += 1
        if breaker.failures >= self.failure_threshold:
            breaker.open_until = self._clock() + self.cooldown_s
        if self.shared is not None:
            self.shared.failed(deployment, self.failure_threshold, self.cooldown_s)

    async def start(self) -> None:
        """Start sharing (a no-op without Redis)."""
        if self.shared is not None:
            await self.shared.start()

    async def aclose(self) -> None:
        if self.shared is not None:
            await self.shared.aclose()


def make_breakers(config: GatewayConfig) -> CircuitBreakers:
    """The gateway's breakers: shared through Redis when ``redis_url`` is set (and
    ``circuit_breaker.shared`` is not turned off), per process otherwise."""
    settings = config.circuit_breaker
    shared: SharedHealth | None = None
    if config.redis_url and settings.shared:
        from gateway.health_sync import RedisHealthSync

        shared = RedisHealthSync(config.redis_url, interval_s=settings.sync_interval_s)
    return CircuitBreakers(settings.failure_threshold, settings.cooldown_s, shared=shared)
