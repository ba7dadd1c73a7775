"""The asyncio load driver for streams (aiohttp): time to first token, inter-token gaps, and N
streams held open at once.

A "token" is an SSE event whose ``choices[0].delta.content`` is non-empty. Each event's arrival
time is taken when its line is read, so a proxy that buffers several events into one write shows
up as near-zero gaps (:attr:`StreamStats.burst_fraction`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
import orjson


@dataclass
class StreamStats:
    streams: int = 0
    completed: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    ttft_ms: list[float] = field(default_factory=list)
    gaps_ms: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    peak_open: int = 0
    wall_s: float = 0.0
    interval_ms: float = 0.0

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text[:300])

    @property
    def burst_fraction(self) -> float:
        """Share of gaps under a quarter of the upstream's interval: events that arrived coalesced."""
        if not self.gaps_ms or not self.interval_ms:
            return 0.0
        limit = self.interval_ms / 4
        return sum(1 for g in self.gaps_ms if g < limit) / len(self.gaps_ms)


def percentile(values: list[float], pct: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _content(payload: bytes) -> str | None:
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    if "error" in data:
        raise RuntimeError(f"error event: {payload[:200]!r}")
    choices = data.get("choices") or []
    if not choices:
        return None
    delta = choices[0].get("delta") or {}
    return delta.get("content") or None


async def _one_stream(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    stats: StreamStats,
    state: dict[str, int],
    expect_tokens: int,
) -> None:
    stats.streams += 1
    started = time.perf_counter()
    opened = False
    try:
        async with session.post(url, data=body, headers=headers) as resp:
            if resp.status != 200:
                stats.error(f"HTTP {resp.status}: {(await resp.read())[:200]!r}")
                return
            opened = True
            state["open"] += 1
            stats.peak_open = max(stats.peak_open, state["open"])
            tokens, last, done = 0, 0.0, False
            async for line in resp.content:
                if not line.startswith(b"data:"):
                    continue
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    done = True
                    break
                if _content(payload) is None:
                    continue
                now = time.perf_counter()
                if tokens == 0:
                    stats.ttft_ms.append((now - started) * 1000)
                else:
                    stats.gaps_ms.append((now - last) * 1000)
                last = now
                tokens += 1
            stats.tokens.append(tokens)
            if not done:
                stats.error(f"stream ended without [DONE] after {tokens} tokens")
            elif expect_tokens and tokens != expect_tokens:
                stats.error(f"stream carried {tokens} tokens, expected {expect_tokens}")
            else:
                stats.completed += 1
    except (TimeoutError, aiohttp.ClientError, RuntimeError, OSError) as exc:
        stats.error(f"{type(exc).__name__}: {exc}")
    finally:
        if opened:
            state["open"] -= 1


async def run_streams(
    url: str,
    *,
    model: str,
    headers: dict[str, str],
    count: int,
    concurrency: int,
    expect_tokens: int = 0,
    interval_ms: float = 0.0,
    timeout_s: float = 120.0,
) -> StreamStats:
    """``count`` streamed chat requests, at most ``concurrency`` at once (all at once when equal)."""
    body = orjson.dumps(
        {
            "model": model,
            "stream": True,
            "max_tokens": max(expect_tokens, 1),
            "messages": [{"role": "user", "content": "Write a short story about a railway switchyard."}],
        }
    )
    stats = StreamStats(interval_ms=interval_ms)
    state = {"open": 0}
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s, sock_connect=30)
    hdrs = {"content-type": "application/json", **headers}
    started = time.perf_counter()
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(count):
            queue.put_nowait(i)

        async def worker() -> None:
            while True:
                try:
                    queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                await _one_stream(session, url, body, hdrs, stats, state, expect_tokens)

        await asyncio.gather(*(worker() for _ in range(min(concurrency, count))))
    stats.wall_s = time.perf_counter() - started
    return stats
