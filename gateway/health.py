"""Per-deployment circuit breakers shared by every request of this process.

A deployment that fails ``failure_threshold`` times in a row is taken out of plans for
``cooldown_s``; after that requests reach it again, and a single failure re-opens the circuit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(slots=True)
class _Breaker:
    failures: int = 0
    open_until: float = 0.0


class CircuitBreakers:
    """Health snapshot for the router, fed by the executor's outcomes."""

    def __init__(self, failure_threshold: int = 5, cooldown_s: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._breakers: dict[str, _Breaker] = {}

    def configure(self, failure_threshold: int, cooldown_s: float) -> None:
        self.failure_threshold = failure_threshold
        self.cooldown_s = cooldown_s

    def healthy(self, deployment: str) -> bool:
        breaker = self._breakers.get(deployment)
        if breaker is None or breaker.failures < self.failure_threshold:
            return True
        # After the cooldown requests flow again (half-open); one more failure re-opens it at once.
        return self._clock() >= breaker.open_until

    def snapshot(self) -> dict[str, bool]:
        """Deployments currently out of service (missing names are healthy)."""
        return {name: False for name in self._breakers if not self.healthy(name)}

    def record_success(self, deployment: str) -> None:
        breaker = self._breakers.get(deployment)
        if breaker is not None:
            breaker.failures = 0

    def record_failure(self, deployment: str) -> None:
        breaker = self._breakers.setdefault(deployment, _Breaker())
        breaker.failures += 1
        if breaker.failures >= self.failure_threshold:
            breaker.open_until = self._clock() + self.cooldown_s
