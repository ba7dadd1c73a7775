"""Measured latency and time to first token per deployment: exponentially weighted moving averages.

Every answered attempt (``Exchange.finish``) feeds its deployment's averages at once, in memory:
whole-answer latency from the attempt's start to the end of the answer, and, for a stream, the
time to its first token. ``new = old + alpha * (sample - old)``; the first sample is taken as is.

With Redis one hash holds everyone's averages::

    {switchyard}:latency   field <deployment> = "<latency ms>:<answers>:<ttft ms>:<streams>:<updated ms>"

Each sync round sends, per deployment, the mean and count of the answers seen since the last
round; a script folds a batch of ``k`` answers with mean ``m`` as ``k`` steps would:
``new = old + (1 - (1 - alpha)^k) * (m - old)``. The round then reads the hash back and it
replaces the local averages. So a replica writes each field at most once per
``measurements.sync_interval_s``, and sees the others' answers within that bound; the request
path only ever reads the local copy. A measurement with no new answer for
``latency_max_age_s`` is dropped (the deployment falls back to its ``latency_ms`` hint), so one
bad minute does not rank a deployment last forever.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from routing.live import Measured

# KEYS[1] the hash. ARGV: alpha, now ms, key ttl ms, then per deployment: name, latency sum,
# latency count, ttft sum, ttft count.
FOLD_LUA = """
local alpha = tonumber(ARGV[1])
for i = 4, #ARGV, 5 do
  local name = ARGV[i]
  local lat, latn, ttft, ttftn = 0, 0, 0, 0
  local raw = redis.call('HGET', KEYS[1], name)
  if raw then
    local a, b, c, d = string.match(raw, '^([^:]+):([^:]+):([^:]+):([^:]+)')
    lat, latn, ttft, ttftn = tonumber(a) or 0, tonumber(b) or 0, tonumber(c) or 0, tonumber(d) or 0
  end
  local n = tonumber(ARGV[i + 2])
  if n > 0 then
    local mean = tonumber(ARGV[i + 1]) / n
    if latn == 0 then lat = mean else lat = lat + (1 - (1 - alpha) ^ n) * (mean - lat) end
    latn = latn + n
  end
  n = tonumber(ARGV[i + 4])
  if n > 0 then
    local mean = tonumber(ARGV[i + 3]) / n
    if ttftn == 0 then ttft = mean else ttft = ttft + (1 - (1 - alpha) ^ n) * (mean - ttft) end
    ttftn = ttftn + n
  end
  redis.call('HSET', KEYS[1], name, string.format('%.3f:%d:%.3f:%d:%d', lat, latn, ttft, ttftn, tonumber(ARGV[2])))
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""
KEY_TTL_MS = 24 * 3600 * 1000


class LatencyStats:
    """Moving averages per deployment (see the module docstring); :attr:`measured` is what the router reads."""

    def __init__(
        self,
        alpha: float = 0.2,
        max_age_s: float = 600.0,
        prefix: str = "switchyard",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.alpha = alpha
        self.max_age_s = max_age_s
        self.key = "{" + prefix + "}:latency"
        self._clock = clock
        self.measured: dict[str, Measured] = {}  # the router reads this very dict
        self._updated: dict[str, float] = {}  # deployment -> when its average last moved (epoch s)
        self._batch: dict[str, list[float]] = {}  # deployment -> [latency sum, count, ttft sum, count]
        self._script: Any = None

    def observe(self, deployment: str, latency_ms: float, ttft_ms: float | None = None) -> None:
        """One answered attempt: fold it into the local average and queue it for Redis."""
        old = self.measured.get(deployment, Measured())
        latency = latency_ms if old.samples == 0 or old.latency_ms is None else self._step(old.latency_ms, latency_ms)
        ttft, streams = old.ttft_ms, old.ttft_samples
        if ttft_ms is not None:
            ttft = ttft_ms if streams == 0 or ttft is None else self._step(ttft, ttft_ms)
            streams += 1
        self.measured[deployment] = Measured(latency, ttft, old.samples + 1, streams)
        self._updated[deployment] = self._clock()
        batch = self._batch.setdefault(deployment, [0.0, 0, 0.0, 0])
        batch[0] += latency_ms
        batch[1] += 1
        if ttft_ms is not None:
            batch[2] += ttft_ms
            batch[3] += 1

    def _step(self, old: float, sample: float) -> float:
        return old + self.alpha * (sample - old)

    def expire(self) -> None:
        """Drop measurements with no new answer for ``max_age_s``."""
        horizon = self._clock() - self.max_age_s
        for name in [n for n, at in self._updated.items() if at < horizon]:
            self.measured.pop(name, None)
            self._updated.pop(name, None)

    async def sync(self, redis: Any) -> None:
        """Send this replica's answers since the last round, read everyone's: one round trip."""
        batch, self._batch = self._batch, {}
        now_ms = int(self._clock() * 1000)
        if self._script is None:
            self._script = redis.register_script(FOLD_LUA)
        async with redis.pipeline(transaction=False) as pipe:
            if batch:
                args: list[Any] = [self.alpha, now_ms, KEY_TTL_MS]
                for name, (lat_sum, lat_n, ttft_sum, ttft_n) in batch.items():
                    args += [name, repr(lat_sum), int(lat_n), repr(ttft_sum), int(ttft_n)]
                await self._script(keys=[self.key], args=args, client=pipe)
            pipe.hgetall(self.key)
            replies = await pipe.execute()
        self._apply(replies[-1], now_ms)

    def _apply(self, fields: dict[bytes, bytes], now_ms: int) -> None:
        horizon_ms = now_ms - self.max_age_s * 1000
        measured: dict[str, Measured] = {}
        updated: dict[str, float] = {}
        for raw_name, raw in fields.items():
            try:
                lat, latn, ttft, ttftn, at = raw.decode().split(":")
                samples, streams, at_ms = int(latn), int(ttftn), int(at)
                if at_ms < horizon_ms:
                    continue
                name = raw_name.decode()
                measured[name] = Measured(float(lat) if samples else None, float(ttft) if streams else None, samples, streams)
                updated[name] = at_ms / 1000
            except ValueError:
                continue  # not ours to read
        # answers seen here since the batch was taken are in the next round; keep them visible now
        for name in self._batch:
            if name in self.measured:
                measured.setdefault(name, self.measured[name])
        self.measured.clear()
        self.measured.update(measured)
        self._updated = updated
