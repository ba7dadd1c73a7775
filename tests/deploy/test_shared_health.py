"""Circuit breakers shared through a real Redis (gateway.health + gateway.health_sync), in-process:
what one replica learns protects the others; without Redis, or with Redis unreachable or silent,
each process keeps its own and no call on the request path waits."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from gateway.health import CircuitBreakers, make_breakers
from gateway.health_sync import RedisHealthSync
from tests.helpers import fake_deployment, free_port, make_config

REDIS_URL = os.environ.get("SWITCHYARD_TEST_REDIS_HEALTH", "redis://127.0.0.1:6379/11")


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"health-test-{uuid.uuid4().hex[:8]}"
    redis = Redis.from_url(REDIS_URL)
    try:
        await redis.ping()
    except Exception as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} (run `make services`): {exc}")
    yield name
    await redis.delete(f"{{{name}}}:breakers")
    await redis.aclose()


def _replica(prefix: str) -> tuple[CircuitBreakers, RedisHealthSync]:
    """One replica's breakers (threshold 3, cooldown 30 s) and their Redis side."""
    sync = RedisHealthSync(REDIS_URL, prefix=prefix)
    return CircuitBreakers(3, 30.0, shared=sync), sync


async def test_a_circuit_one_replica_opens_is_open_on_the_others(prefix: str) -> None:
    (a, a_sync), (b, b_sync), (c, c_sync) = (_replica(prefix) for _ in range(3))
    try:
        for _ in range(3):
            a.record_failure("primary")
        assert not a.healthy("primary")  # locally at once, before any Redis round trip
        assert b.healthy("primary") and c.healthy("primary")
        await a_sync.sync_once()
        await b_sync.sync_once()
        await c_sync.sync_once()
        assert not b.healthy("primary") and not c.healthy("primary")
        assert b.snapshot() == {"primary": False} == c.snapshot()
        assert b.healthy("backup")
        # The cooldown is Redis's: the others' deadline is about cooldown_s away, not more.
        remaining = b_sync._open["primary"] - time.monotonic()
        assert 28 < remaining <= 30
    finally:
        for replica in (a, b, c):
            await replica.aclose()


async def test_failures_are_pooled_and_a_success_anywhere_closes_the_shared_circuit(prefix: str) -> None:
    (a, a_sync), (b, b_sync) = _replica(prefix), _replica(prefix)
    try:
        a.record_failure("flaky")
        a.record_failure("flaky")
        b.record_failure("flaky")
        assert a.healthy("flaky") and b.healthy("flaky")  # neither saw three on its own
        await a_sync.sync_once()
        await b_sync.sync_once()
        await a_sync.sync_once()
        assert not a.healthy("flaky") and not b.healthy("flaky")  # three together did
        # A probe after the cooldown that succeeds on b closes it for a too.
        b.record_success("flaky")
        await b_sync.sync_once()
        await a_sync.sync_once()
        assert not a_sync.is_open("flaky") and not b_sync.is_open("flaky")
        redis = Redis.from_url(REDIS_URL)
        try:
            assert await redis.hget(f"{{{prefix}}}:breakers", "flaky") is None
        finally:
            await redis.aclose()
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_healthy_deployment_costs_redis_nothing(prefix: str) -> None:
    a, a_sync = _replica(prefix)
    try:
        for _ in range(100):
            a.record_success("steady")
        assert not a_sync._outbox  # nothing to reset: nothing is sent
        await a_sync.sync_once()
    finally:
        await a.aclose()


async def test_without_redis_breakers_stay_per_process() -> None:
    deployments = [fake_deployment("d0", "http://127.0.0.1:9/v1")]
    local = make_breakers(make_config({"deployments": deployments}))
    assert local.shared is None
    shared = make_breakers(make_config({"deployments": deployments, "redis_url": REDIS_URL}))
    assert isinstance(shared.shared, RedisHealthSync)
    off = make_breakers(make_config({"deployments": deployments, "redis_url": REDIS_URL, "circuit_breaker": {"shared": False}}))
    assert off.shared is None
    await shared.aclose()


@pytest.fixture
async def silent_redis() -> AsyncIterator[str]:
    """A TCP server that accepts and never answers: Redis at its slowest."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the client gives up

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"redis://127.0.0.1:{port}/0"
    for writer in held:
        writer.close()
    server.close()


@pytest.mark.parametrize("kind", ["silent", "refused"])
async def test_redis_slow_or_down_never_blocks_the_request_path(kind: str, silent_redis: str) -> None:
    url = silent_redis if kind == "silent" else f"redis://127.0.0.1:{free_port()}/0"
    sync = RedisHealthSync(url, interval_s=0.1, timeout_s=0.2)
    breakers = CircuitBreakers(3, 30.0, shared=sync)
    await breakers.start()
    try:
        started = time.perf_counter()
        for _ in range(1000):
            breakers.record_failure("primary")
            breakers.healthy("primary")
            breakers.snapshot()
            breakers.record_success("backup")
        elapsed = time.perf_counter() - started
        assert elapsed < 0.5, f"3000 breaker calls took {elapsed:.3f}s: something waited"
        assert not breakers.healthy("primary")  # the local breaker works on its own
        await asyncio.sleep(1.5)
        assert sync.failed_rounds >= 1 and not sync.connected
        assert len(sync._outbox) == 0 and sync.dropped >= 1000  # outcomes from the outage are not hoarded
        # Meanwhile the loop stayed responsive: a 10 ms sleep takes about 10 ms.
        tick = time.perf_counter()
        await asyncio.sleep(0.01)
        assert time.perf_counter() - tick < 0.2
    finally:
        closing = time.perf_counter()
        await breakers.aclose()
        assert time.perf_counter() - closing < 1.0
