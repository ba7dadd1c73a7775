"""``gateway.volume.VolumeMeter``: each project's request rate over a sliding window, in memory on
the request path and summed over replicas through a real Redis in the background."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.volume import VolumeMeter
from tests.db.fixtures import REDIS_URL, redis_prefix  # noqa: F401 - a fixture


class Clock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_rate_is_requests_per_minute_over_a_sliding_window() -> None:
    clock = Clock()
    meter = VolumeMeter(10, clock=clock)  # a 10 s window: each request there is 6 per minute
    assert meter.rate("p") == 0.0
    assert [meter.hit("p") for _ in range(3)] == [6.0, 12.0, 18.0]
    clock.now += 5
    assert meter.hit("p") == 24.0
    assert meter.rate("other") == 0.0  # per project
    clock.now += 5  # the first three are now 10 s old: out of the window
    assert meter.rate("p") == 6.0
    clock.now += 5
    assert meter.rate("p") == 0.0
    assert meter.hit("p") == 6.0


def test_a_reload_changes_the_window() -> None:
    from routing.volume import VolumePolicy

    clock = Clock()
    meter = VolumeMeter(60, clock=clock)
    for _ in range(30):
        meter.hit("p")
    assert meter.rate("p") == 30.0
    meter.configure(VolumePolicy(window_s=30, sync_interval_s=0.5))
    assert (meter.window_s, meter.interval_s) == (30, 0.5)
    assert meter.rate("p") == 60.0  # the same 30 requests, over half the time


@pytest.fixture
async def meters(redis_prefix: str) -> AsyncIterator[tuple[VolumeMeter, VolumeMeter]]:
    """Two replicas' meters on one Redis (no background task: each round is run by the test)."""
    a = VolumeMeter(60, redis_url=REDIS_URL, prefix=redis_prefix)
    b = VolumeMeter(60, redis_url=REDIS_URL, prefix=redis_prefix)
    yield a, b
    await a.aclose()
    await b.aclose()


async def test_replicas_add_up_their_counts_through_redis(meters: tuple[VolumeMeter, VolumeMeter], redis_prefix: str) -> None:
    a, b = meters
    for _ in range(4):
        a.hit("p")
    for _ in range(3):
        b.hit("p")
    assert (a.rate("p"), b.rate("p")) == (4.0, 3.0)  # before a round: each knows its own
    await a.sync_once()
    await b.sync_once()
    await a.sync_once()
    assert (a.rate("p"), b.rate("p")) == (7.0, 7.0)
    assert b.hit("p") == 8.0  # a new request counts at once where it arrives ...
    assert a.rate("p") == 7.0  # ... and everywhere else after the next rounds
    await b.sync_once()
    await a.sync_once()
    assert a.rate("p") == b.rate("p") == 8.0
    redis = Redis.from_url(REDIS_URL)
    try:
        stored = await redis.hgetall(f"{{{redis_prefix}}}:v:p")
        ttl = await redis.ttl(f"{{{redis_prefix}}}:v:p")
    finally:
        await redis.aclose()
    assert sum(int(v) for v in stored.values()) == 8
    assert 60 < ttl <= 120  # gone a minute after the window, when nobody counts any more


async def test_a_replica_reads_a_project_it_has_not_served_from_its_first_question(
    meters: tuple[VolumeMeter, VolumeMeter],
) -> None:
    a, b = meters
    for _ in range(5):
        a.hit("p")
    await a.sync_once()
    assert b.rate("p") == 0.0  # unknown here until a round has read it
    await b.sync_once()
    assert b.rate("p") == 5.0


async def test_without_redis_each_replica_keeps_its_own_count() -> None:
    meter = VolumeMeter(60, redis_url="redis://127.0.0.1:1/0", timeout_s=0.2)  # nothing listens there
    try:
        for _ in range(3):
            meter.hit("p")
        with pytest.raises(Exception):  # noqa: B017 - whichever connection error redis-py raises
            await meter.sync_once()
        assert meter.rate("p") == 3.0
        meter.hit("p")
        assert meter.rate("p") == 4.0
        assert meter._pending == {"p": 4}  # kept for the round after Redis is back
    finally:
        await meter.aclose()


async def test_counts_kept_through_an_outage_longer_than_the_window_are_dropped() -> None:
    clock = Clock()
    meter = VolumeMeter(60, redis_url="redis://127.0.0.1:1/0", timeout_s=0.2, clock=clock)
    try:
        for _ in range(5):
            meter.hit("p")
        clock.now += 61
        with pytest.raises(Exception):  # noqa: B017 - whichever connection error redis-py raises
            await meter.sync_once()
        assert meter._pending == {}  # sent after the outage they would all land in one second
        assert meter.hit("p") == 1.0
    finally:
        await meter.aclose()


async def test_the_background_round_runs_by_itself(redis_prefix: str) -> None:
    import asyncio

    a = VolumeMeter(60, redis_url=REDIS_URL, prefix=redis_prefix, interval_s=0.05)
    b = VolumeMeter(60, redis_url=REDIS_URL, prefix=redis_prefix, interval_s=0.05)
    await a.start()
    await b.start()
    try:
        for _ in range(6):
            a.hit("p")
        b.rate("p")  # b asks about the project: it is read from now on
        async with asyncio.timeout(10):
            while b.rate("p") < 6.0:
                await asyncio.sleep(0.05)
        assert a.connected and b.connected and a.rounds > 0
    finally:
        await a.aclose()
        await b.aclose()
