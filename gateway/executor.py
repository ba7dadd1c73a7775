"""Walks a plan: try each candidate in order, retry with jitter, fall back, feed the breakers.

A fallback is always the next member of the same plan, so it has passed the same privacy
filter as the first choice. Errors that another attempt cannot fix (the caller's own 4xx)
stop the walk at once. Every failure ends in :class:`AllDeploymentsFailed`, which carries each
attempt so the ledger can record them.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from core.errors import (
    AllDeploymentsFailed,
    Attempt,
    GatewayError,
    UpstreamError,
    UpstreamStatus,
)
from gateway.config import RetryConfig
from gateway.health import CircuitBreakers
from providers.base import Provider, Reply

T = TypeVar("T")


@dataclass(slots=True)
class Outcome:
    """Which deployment answered and what it took to get there."""

    deployment: str
    attempts: list[Attempt] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def fallbacks(self) -> int:
        """How many other deployments were tried before the one that answered."""
        return len({a.deployment for a in self.attempts if a.deployment != self.deployment})


@dataclass(slots=True)
class OpenStream:
    """A stream whose first chunk has arrived: the commit point after which no fallback happens."""

    first: bytes
    rest: AsyncIterator[bytes]
    outcome: Outcome


class Executor:
    """Runs one request over a plan's deployments."""

    def __init__(self, breakers: CircuitBreakers, retries: RetryConfig) -> None:
        self.breakers = breakers
        self.retries = retries

    async def call(
        self,
        deployments: tuple[str, ...],
        providers: dict[str, Provider],
        invoke: Callable[[Provider], Awaitable[Reply]],
    ) -> tuple[Reply, Outcome]:
        """Return the first successful reply along the plan."""

        async def attempt(provider: Provider) -> Reply:
            return await invoke(provider)

        return await self._walk(deployments, providers, attempt)

    async def open_stream(
        self,
        deployments: tuple[str, ...],
        providers: dict[str, Provider],
        invoke: Callable[[Provider], AsyncIterator[bytes]],
    ) -> OpenStream:
        """Open a stream along the plan; falls back until some deployment yields a first chunk."""

        async def attempt(provider: Provider) -> tuple[bytes, AsyncIterator[bytes]]:
            iterator = invoke(provider)
            try:
                first = await iterator.__anext__()
            except StopAsyncIteration:
                raise UpstreamStatus(
                    f"{provider.name}: upstream stream ended without any event", upstream_status=502, deployment=provider.name
                ) from None
            except BaseException:
                await _close(iterator)
                raise
            return first, iterator

        (first, rest), outcome = await self._walk(deployments, providers, attempt)
        return OpenStream(first=first, rest=rest, outcome=outcome)

    async def _walk(
        self,
        deployments: tuple[str, ...],
        providers: dict[str, Provider],
        attempt: Callable[[Provider], Awaitable[T]],
    ) -> tuple[T, Outcome]:
        attempts: list[Attempt] = []
        for name in deployments:
            provider = providers[name]
            for try_number in range(self.retries.max_attempts_per_deployment):
                if try_number > 0 and not self.breakers.healthy(name):
                    break
                started = time.perf_counter()
                try:
                    result = await attempt(provider)
                except UpstreamError as exc:
                    attempts.append(Attempt(name, exc, (time.perf_counter() - started) * 1000))
                    if not exc.retryable:
                        raise AllDeploymentsFailed(attempts) from exc  # the caller's own error: no fallback
                    self.breakers.record_failure(name)
                    if not self._retry_same(exc, try_number):
                        break
                    await asyncio.sleep(self._backoff(try_number, exc))
                    continue
                except GatewayError:
                    raise
                self.breakers.record_success(name)
                return result, Outcome(deployment=name, attempts=attempts, started=started)
        raise AllDeploymentsFailed(attempts)

    def _retry_same(self, exc: UpstreamError, try_number: int) -> bool:
        if try_number + 1 >= self.retries.max_attempts_per_deployment:
            return False
        if isinstance(exc, UpstreamStatus):
            if exc.is_context_length:
                return False  # the same deployment will refuse the same prompt again
            if exc.retry_after is not None and exc.retry_after > self.retries.backoff_max_s:
                return False  # better to fall back than to wait
        return True

    def _backoff(self, try_number: int, exc: UpstreamError) -> float:
        if isinstance(exc, UpstreamStatus) and exc.retry_after is not None:
            return exc.retry_after
        ceiling = min(self.retries.backoff_max_s, self.retries.backoff_base_s * (2**try_number))
        return random.uniform(0, ceiling)  # full jitter


async def _close(iterator: AsyncIterator[bytes]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # noqa: BLE001 - the stream already failed; closing is best effort
            pass
