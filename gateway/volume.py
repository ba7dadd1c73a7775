"""Each project's request rate, for ``when.volume``: counted in memory on the request path, shared
between replicas through Redis in the background.

- **On the request path** (:meth:`VolumeMeter.hit`, :meth:`VolumeMeter.rate`): memory only. A
  request adds one to its project's count for the current second; the rate is requests per
  minute over the last ``routing.volume.window_s`` seconds.
- **Shared** (``redis_url`` set): every ``sync_interval_s`` one script call per replica adds
  the counts taken since the last round to Redis and reads back, for every project this replica
  has seen lately, the sum over the window of every replica's counts::

      {switchyard}:v:<project>   hash  <epoch second, Redis's clock> -> requests   TTL window + 60 s

  The rate a request sees is that sum (at most one round old) plus this replica's counts not yet
  sent: the replicas agree to within a round. A project a replica has not served lately is read
  from the round after its first request.
- **Redis slow or down.** A round is bounded by socket timeouts and a deadline; a failed round
  keeps its counts for the next (an answer lost in flight may count them twice), unless Redis
  stays away longer than the window (then they are dropped: they would all land in one second),
  and backs off.
  Meanwhile each replica's own count is a lower bound that still holds: the rate never reads
  below what this replica alone has served.

Why not admission's RPM counters (``gateway.admission``)? They are fixed minute windows that
restart at zero every minute (a busy project would look idle at the top of each minute), they
are read only after routing (admission reserves for the plan's first candidate), and they exist
only for the subjects of the request, with a window nobody can configure.
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

from routing.volume import VolumePolicy

log = logging.getLogger("switchyard.volume")

# KEYS: one hash per project. ARGV: window s, key ttl s, then per project the requests counted
# since the last round. Returns per project the requests of every replica over the window.
FLUSH_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1])
local window, ttl = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS do
  local n = tonumber(ARGV[2 + i])
  if n > 0 then
    redis.call('HINCRBY', KEYS[i], t[1], n)
    redis.call('EXPIRE', KEYS[i], ttl)
  end
  local flat = redis.call('HGETALL', KEYS[i])
  local total, stale = 0, {}
  for j = 1, #flat, 2 do
    if tonumber(flat[j]) > now - window then total = total + tonumber(flat[j + 1]) else stale[#stale + 1] = flat[j] end
  end
  if #stale > 0 then redis.call('HDEL', KEYS[i], unpack(stale)) end
  out[i] = total
end
return out
"""


class _Ring:
    """One project's per-second counts over the window, and their running total."""

    __slots__ = ("seconds", "total")

    def __init__(self) -> None:
        self.seconds: deque[list[int]] = deque()  # [second, count], oldest first
        self.total = 0

    def prune(self, now_s: int, window_s: int) -> None:
        seconds = self.seconds
        while seconds and seconds[0][0] <= now_s - window_s:
            self.total -= seconds.popleft()[1]

    def add(self, now_s: int) -> None:
        seconds = self.seconds
        if seconds and seconds[-1][0] == now_s:
            seconds[-1][1] += 1
        else:
            seconds.append([now_s, 1])
        self.total += 1


class VolumeMeter:
    """Requests per minute per project, over a sliding window (see the module docstring)."""

    def __init__(
        self,
        window_s: int = 60,
        *,
        redis_url: str | None = None,
        interval_s: float = 1.0,
        timeout_s: float = 0.5,
        prefix: str = "switchyard",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.window_s = window_s
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self._clock = clock
        self._prefix = "{" + prefix + "}:v:"
        self._local: dict[str, _Ring] = {}  # this replica's own requests
        self._pending: dict[str, int] = {}  # counted here, not yet added to Redis
        self._shared: dict[str, int] = {}  # every replica's requests over the window, as last read
        self._watched: dict[str, float] = {}  # project -> when last asked about: read while recent
        self._redis: Redis | None = None
        if redis_url:
            self._redis = Redis.from_url(
                redis_url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, retry=Retry(NoBackoff(), 0)
            )
            self._flush = self._redis.register_script(FLUSH_LUA)
        self._last_round = clock()  # when a round last reached Redis
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.connected = False
        self.rounds = 0
        self.failed_rounds = 0

    @classmethod
    def for_policy(cls, policy: VolumePolicy, redis_url: str | None) -> VolumeMeter:
        return cls(policy.window_s, redis_url=redis_url, interval_s=policy.sync_interval_s)

    def configure(self, policy: VolumePolicy) -> None:
        """A reloaded config's window and round interval (Redis stays as started)."""
        self.window_s = policy.window_s
        self.interval_s = policy.sync_interval_s

    # -- the request path: memory only ------------------------------------------------------
    def hit(self, project: str) -> float:
        """Count one request of ``project``; its rate, this request included."""
        now = self._clock()
        second = int(now)
        ring = self._local.get(project)
        if ring is None:
            ring = self._local[project] = _Ring()
        ring.prune(second, self.window_s)
        ring.add(second)
        if self._redis is None:
            return ring.total * 60.0 / self.window_s
        self._pending[project] = self._pending.get(project, 0) + 1
        self._watched[project] = now
        return max(ring.total, self._shared.get(project, 0) + self._pending[project]) * 60.0 / self.window_s

    def rate(self, project: str) -> float:
        """``project``'s rate in requests per minute, counting nothing (``/v1/route/explain``)."""
        now = self._clock()
        ring = self._local.get(project)
        local = 0
        if ring is not None:
            ring.prune(int(now), self.window_s)
            local = ring.total
        if self._redis is None:
            return local * 60.0 / self.window_s
        self._watched[project] = now
        return max(local, self._shared.get(project, 0) + self._pending.get(project, 0)) * 60.0 / self.window_s

    # -- the background task -----------------------------------------------------------------
    async def start(self) -> None:
        if self._redis is not None and self._task is None:
            self._task = asyncio.create_task(self._run(), name="volume-sync")

    async def _run(self) -> None:
        backoff = self.interval_s
        while True:
            try:
                async with asyncio.timeout(4 * self.timeout_s):
                    await self.sync_once()
            except Exception as exc:  # noqa: BLE001 - Redis is optional here: log, back off, go on
                self.failed_rounds += 1
                if self.connected or self.failed_rounds == 1:
                    log.warning(
                        "shared request volume: Redis unreachable (%s); each replica counts its own requests until it is back",
                        type(exc).__name__,
                    )
                self.connected = False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not self.connected and self.failed_rounds:
                log.info("shared request volume: Redis reachable again")
            self.connected = True
            backoff = self.interval_s
            await asyncio.sleep(self.interval_s)

    async def sync_once(self) -> None:
        """Add the counts taken since the last round to Redis and read every watched project's sum."""
        if self._redis is None:
            return
        async with self._lock:
            now = self._clock()
            if now - self._last_round > self.window_s:
                # counts kept through an outage longer than the window: sent now they would all
                # land in one second and make the project look busy for a window
                self._pending = {}
            self._forget(now)
            projects = list(self._watched)
            if not projects:
                self._last_round = now
                return
            pending, self._pending = self._pending, {}
            try:
                totals = await self._flush(
                    keys=[self._prefix + p for p in projects],
                    args=[self.window_s, self.window_s + 60, *(pending.get(p, 0) for p in projects)],
                )
            except BaseException:
                for project, count in pending.items():  # sent with the next round
                    self._pending[project] = self._pending.get(project, 0) + count
                raise
            self._shared = {p: int(total) for p, total in zip(projects, totals, strict=True)}
            self._last_round = now
            self.rounds += 1

    def _forget(self, now: float) -> None:
        """Stop reading projects nobody asked about for a whole window (their counts are sent first)."""
        horizon = now - self.window_s - self.interval_s
        for project in [p for p, seen in self._watched.items() if seen < horizon and not self._pending.get(p)]:
            del self._watched[project]
            self._shared.pop(project, None)
            ring = self._local.get(project)
            if ring is not None:
                ring.prune(int(now), self.window_s)
                if not ring.total:
                    del self._local[project]

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._redis is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2 * self.timeout_s):
                    await self.sync_once()  # the last counts, for the replicas that stay
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2 * self.timeout_s):
                    await self._redis.aclose()
