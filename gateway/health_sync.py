"""Circuit-breaker state shared by every replica through Redis, with Redis off the request path.

One hash holds the shared breaker of every deployment::

    {switchyard}:breakers   field <deployment> = "<failures>:<open until, ms on Redis's clock>"

- **Out.** A failure recorded on any replica is one script call (``FAILURE_LUA``) that counts it
  and, at ``failure_threshold``, opens the circuit until Redis's clock + ``cooldown_s``: one
  clock for every replica, whatever their own say. Failures are pooled: three replicas that
  each see two failures open a threshold-5 circuit for all. A success deletes the field (only
  when there is something to delete, so a healthy deployment costs Redis nothing).
- **In.** Every ``interval_s``, and right after sending, the whole hash is read with Redis's
  ``TIME`` in one round trip; the local copy is replaced, each remaining cooldown turned into a
  deadline on this process's monotonic clock.
- **Redis slow or down.** A round (send + read) is bounded by socket timeouts and an overall
  deadline; a failed round drops what it was sending (outcomes from an outage are stale by the
  time Redis is back), keeps the last copy (its deadlines run out by themselves) and retries
  with backoff. Nothing the request path calls ever waits for Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

log = logging.getLogger("switchyard.health")

KEY_TTL_MS = 24 * 3600 * 1000  # the hash disappears a day after the last failure anywhere

# KEYS[1] the breakers hash. ARGV: deployment, failure threshold, cooldown ms, key ttl ms.
FAILURE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local failures, open_until = 0, 0
local raw = redis.call('HGET', KEYS[1], ARGV[1])
if raw then
  local sep = string.find(raw, ':', 1, true)
  if sep then
    failures = tonumber(string.sub(raw, 1, sep - 1)) or 0
    open_until = tonumber(string.sub(raw, sep + 1)) or 0
  end
end
failures = failures + 1
if failures >= tonumber(ARGV[2]) then
  open_until = now + tonumber(ARGV[3])
end
redis.call('HSET', KEYS[1], ARGV[1], string.format('%d:%d', failures, open_until))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return failures
"""

_Outcome = tuple[str, int, int] | str  # (deployment, threshold, cooldown ms) for a failure; a name for a success


class RedisHealthSync:
    """The shared half of :class:`gateway.health.CircuitBreakers` (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        interval_s: float = 0.5,
        timeout_s: float = 0.25,
        prefix: str = "switchyard",
        max_pending: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.key = f"{{{prefix}}}:breakers"
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        # No retries inside the client: a slow round is given up, never stretched.
        self._redis = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0))
        self._failure = self._redis.register_script(FAILURE_LUA)
        self._clock = clock
        self._open: dict[str, float] = {}  # deployment -> monotonic deadline of its shared cooldown
        self._failing: set[str] = set()  # deployments with shared failures counted
        self._outbox: deque[_Outcome] = deque(maxlen=max_pending)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.rounds = 0
        self.failed_rounds = 0
        self.dropped = 0  # outcomes not shared: the outbox overflowed or Redis was unreachable

    # -- the request path: memory only ------------------------------------------------------
    def is_open(self, deployment: str) -> bool:
        until = self._open.get(deployment)
        return until is not None and self._clock() < until

    def open_deployments(self) -> list[str]:
        now = self._clock()
        return [name for name, until in self._open.items() if now < until]

    def failed(self, deployment: str, failure_threshold: int, cooldown_s: float) -> None:
        self._failing.add(deployment)
        self._post((deployment, failure_threshold, int(cooldown_s * 1000)))

    def succeeded(self, deployment: str) -> None:
        if deployment in self._failing or deployment in self._open:
            self._failing.discard(deployment)
            self._open.pop(deployment, None)
            self._post(deployment)

    def _post(self, outcome: _Outcome) -> None:
        if len(self._outbox) == self._outbox.maxlen:
            self.dropped += 1
        self._outbox.append(outcome)
        self._wake.set()

    # -- the background task -----------------------------------------------------------------
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="breaker-sync")

    async def _run(self) -> None:
        backoff = self.interval_s
        while True:
            self._wake.clear()
            try:
                # Socket timeouts bound each call; this bounds the round (connect + two round trips).
                async with asyncio.timeout(4 * self.timeout_s):
                    await self.sync_once()
            except Exception as exc:  # noqa: BLE001 - Redis is optional here: log, back off, go on
                self.failed_rounds += 1
                self.dropped += len(self._outbox)
                self._outbox.clear()
                if self.connected or self.failed_rounds == 1:
                    log.warning(
                        "shared circuit breakers: Redis unreachable (%s); each replica keeps its own until it is back",
                        type(exc).__name__,
                    )
                self.connected = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not self.connected and self.failed_rounds:
                log.info("shared circuit breakers: Redis reachable again")
            self.connected = True
            backoff = self.interval_s
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)

    async def sync_once(self) -> None:
        """Send the queued outcomes, then read the shared state (one round)."""
        batch = list(self._outbox)
        self._outbox.clear()
        if batch:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for outcome in batch:
                        if isinstance(outcome, str):
                            pipe.hdel(self.key, outcome)
                        else:
                            name, threshold, cooldown_ms = outcome
                            await self._failure(keys=[self.key], args=[name, threshold, cooldown_ms, KEY_TTL_MS], client=pipe)
                    await pipe.execute()
            except BaseException:
                self.dropped += len(batch)
                raise
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.time()
            pipe.hgetall(self.key)
            (seconds, micros), fields = await pipe.execute()
        self._apply(seconds * 1000 + micros // 1000, fields)
        self.rounds += 1

    def _apply(self, redis_now_ms: int, fields: dict[bytes, bytes]) -> None:
        now = self._clock()
        opened: dict[str, float] = {}
        failing: set[str] = set()
        for raw_name, raw_value in fields.items():
            name = raw_name.decode()
            failures, _, until = raw_value.decode().partition(":")
            try:
                remaining_ms = int(until) - redis_now_ms
                if int(failures) > 0:
                    failing.add(name)
            except ValueError:
                continue  # not ours to interpret
            if remaining_ms > 0:
                opened[name] = now + remaining_ms / 1000
        self._open, self._failing = opened, failing

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2 * self.timeout_s):
                await self._redis.aclose()
