"""Walks a plan: try each candidate in order, retry with jitter, fall back, feed the breakers.

A fallback is always the next member of the same plan, so it has passed the same privacy
filter as the first choice. Errors that another attempt cannot fix (the caller's own 4xx)
stop the walk at once. Every failure ends in :class:`AllDeploymentsFailed`, which carries each
attempt so the ledger can record them. The :class:`Walk` records, as it happens, what was tried
and who is being tried now, so that a request abandoned mid-attempt can still be accounted for.

Circuit breakers count only what says something about a backend's health: transport failures
and 5xx answers. A 429 (the backend is busy, or our account is) and the caller's own 4xx fall
back or stop without opening anyone's breaker.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.errors import (
    AllDeploymentsFailed,
    Attempt,
    GatewayError,
    UpstreamError,
    UpstreamStatus,
)
from gateway.config import RetryConfig
from gateway.health import CircuitBreakers
from gateway.telemetry import UNTRACED
from providers.base import Provider

log = logging.getLogger("switchyard.executor")
T = TypeVar("T")


@dataclass(slots=True)
class Walk:
    """One request's way through its plan: failed attempts, and the deployment being tried (or
    that answered, once ``answered`` is set)."""

    attempts: list[Attempt] = field(default_factory=list)
    current: str | None = None
    answered: bool = False
    attempt_started: float = 0.0
    trace: Any = UNTRACED  # a span per attempt when tracing is on (gateway.telemetry)

    @property
    def fallbacks(self) -> int:
        """How many other deployments were tried before the current one."""
        return len({a.deployment for a in self.attempts if a.deployment != self.current})

    @property
    def retried(self) -> bool:
        """More than one backend call was made (retries or fallbacks)."""
        return len(self.attempts) > 1 or (bool(self.attempts) and self.answered)


@dataclass(slots=True)
class OpenStream:
    """A stream whose first chunk has arrived: the commit point after which no fallback happens."""

    first: bytes
    rest: AsyncIterator[bytes]


class Executor:
    """Runs one request over a plan's deployments."""

    def __init__(self, breakers: CircuitBreakers, retries: RetryConfig) -> None:
        self.breakers = breakers
        self.retries = retries
        # requests in flight per deployment (gateway.measured.live.InFlight): an attempt enters;
        # a failed one leaves here, an answered one when its exchange finishes
        self.load: Any = None

    async def call(
        self,
        deployments: tuple[str, ...],
        providers: dict[str, Provider],
        invoke: Callable[[Provider], Awaitable[T]],
        walk: Walk,
    ) -> T:
        """The first successful reply along the plan."""
        return await self._walk(deployments, providers, invoke, walk)

    async def open_stream(
        self,
        deployments: tuple[str, ...],
        providers: dict[str, Provider],
        invoke: Callable[[Provider], AsyncIterator[bytes]],
        walk: Walk,
    ) -> OpenStream:
        """Open a stream along the plan; falls back until some deployment yields a first chunk."""

        async def attempt(provider: Provider) -> OpenStream:
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
            return OpenStream(first, iterator)

        return await self._walk(deployments, providers, attempt, walk)

    async def _walk(
        self,
        deployments: tuple[str, ...],
        providers: dict[str, Provider],
        attempt: Callable[[Provider], Awaitable[T]],
        walk: Walk,
    ) -> T:
        refused: GatewayError | None = None  # an adapter's own refusal of the request (a field it cannot take)
        for name in deployments:
            provider = providers[name]
            for try_number in range(self.retries.max_attempts_per_deployment):
                if try_number > 0 and not self.breakers.healthy(name):
                    break
                walk.current, walk.attempt_started = name, time.perf_counter()
                try:
                    result = await self._attempt(name, provider, attempt, walk)
                except UpstreamError as exc:
                    self._failed(walk, name, exc)
                    if not exc.retryable:
                        raise AllDeploymentsFailed(walk.attempts) from exc  # the caller's own error: no fallback
                    if not self._retry_same(exc, try_number):
                        break
                    await asyncio.sleep(self._backoff(try_number, exc))
                    continue
                except GatewayError as exc:  # refused before reaching the backend: another candidate may take it
                    walk.current = None
                    refused = refused or exc
                    break
                except (asyncio.CancelledError, GeneratorExit):
                    raise
                except Exception as exc:
                    log.exception("deployment %s: the adapter failed unexpectedly", name)
                    self._failed(walk, name, UpstreamError(f"{name}: the adapter failed ({type(exc).__name__})", deployment=name))
                    break
                self.breakers.record_success(name)
                walk.answered = True
                return result
        walk.current = None
        if refused is not None and not walk.attempts:
            raise refused  # every candidate refused it as sent: the caller's 400, naming the param
        raise AllDeploymentsFailed(walk.attempts)

    async def _attempt(self, name: str, provider: Provider, attempt: Callable[[Provider], Awaitable[T]], walk: Walk) -> T:
        load = self.load
        if load is None:
            with walk.trace.attempt(name):
                return await attempt(provider)
        load.enter(name)
        try:
            with walk.trace.attempt(name):
                return await attempt(provider)
        except BaseException:
            load.leave(name)
            raise

    def _failed(self, walk: Walk, name: str, exc: UpstreamError) -> None:
        walk.attempts.append(Attempt(name, exc, (time.perf_counter() - walk.attempt_started) * 1000))
        if exc.backend_fault:
            self.breakers.record_failure(name)

    def _retry_same(self, exc: UpstreamError, try_number: int) -> bool:
        if try_number + 1 >= self.retries.max_attempts_per_deployment:
            return False
        if isinstance(exc, UpstreamStatus):
            if exc.is_context_length or exc.upstream_status in (401, 403):
                return False  # the same deployment will refuse the same request again
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
