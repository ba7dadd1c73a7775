"""Spend caps and measured latency shared by two gateway instances through one real Redis
(issue 16, item 5). Each instance is a whole app (lifespan, admission, ledger) in this process;
the test runs their sync rounds itself (``LiveSignals.sync_once``) instead of waiting for the
background ones, so what one replica learned reaching the other is an awaited event."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from redis.asyncio import Redis

from gateway.admission.base import budget_window, usd_to_nanos
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, app_client, fake_deployment, make_config

REDIS_URL = os.environ.get("SWITCHYARD_TEST_REDIS_MEASURED", "redis://127.0.0.1:6379/10")
PRICES = {"input_per_mtok": 1000, "output_per_mtok": 2000}
HI = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
async def names() -> AsyncIterator[dict[str, str]]:
    """This run's deployment names (the Redis keys are named after them), cleaned up afterwards."""
    redis = Redis.from_url(REDIS_URL)
    try:
        await redis.ping()
    except Exception as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} (run `make services`): {exc}")
    suffix = uuid.uuid4().hex[:8]
    yield {"hosted": f"hosted-{suffix}", "home": f"home-{suffix}"}
    keys = [k async for k in redis.scan_iter(match=f"*{suffix}*", count=1000)]
    if keys:
        await redis.delete(*keys)
    for name in ("hosted", "home"):
        await redis.hdel("{switchyard}:latency", f"{name}-{suffix}")
    await redis.aclose()


def _config(tmp_path: Path, url: str, names: dict[str, str]):
    hosted = fake_deployment(
        names["hosted"],
        url,
        model="m0",
        locality="hosted",
        pricing=PRICES,
        quality=5,
        latency_ms=10_000,
        spend_cap={"usd": "0.05", "period": "daily"},
    )
    home = fake_deployment(names["home"], url, model="m1", quality=2)
    return make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "redis_url": REDIS_URL,
            "deployments": [hosted, home],
            "routes": [
                {"name": "auto", "objective": "best", "candidates": [names["hosted"], names["home"]]},
                {"name": "fast", "objective": "fastest", "candidates": [names["hosted"], names["home"]]},
            ],
            "ledger": {"flush_interval_ms": 10, "spool_dir": str(tmp_path / "spool")},
            "retries": {"max_attempts_per_deployment": 1},
            "measurements": {"sync_interval_s": 60},  # the test runs the rounds
        }
    )


def _sdk(client: httpx.AsyncClient, http: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=MASTER_KEY, base_url="http://gateway/v1", http_client=http, max_retries=0)


async def _served(sdk: openai.AsyncOpenAI, model: str = "auto") -> str:
    raw = await sdk.chat.completions.with_raw_response.create(model=model, messages=HI)  # type: ignore[arg-type]
    raw.parse()
    return raw.http_response.headers["x-switchyard-deployment"]


def _live(client: httpx.AsyncClient) -> Any:
    return client.app.state.gateway.live  # type: ignore[attr-defined]


async def test_a_cap_reached_through_one_replica_takes_the_deployment_out_on_the_other(
    upstream: FakeUpstream, tmp_path: Path, names: dict[str, str]
) -> None:
    hosted, home = names["hosted"], names["home"]
    async with (
        app_client(_config(tmp_path / "a", upstream.base_url, names)) as a,
        app_client(_config(tmp_path / "b", upstream.base_url, names)) as b,
        httpx.AsyncClient(transport=a._transport, base_url="http://gateway/v1") as http_a,
        httpx.AsyncClient(transport=b._transport, base_url="http://gateway/v1") as http_b,
    ):
        sdk_a, sdk_b = _sdk(a, http_a), _sdk(b, http_b)
        assert [await _served(sdk_a) for _ in range(2)] == [hosted, hosted]  # ~$0.03 each: past $0.05
        assert await _served(sdk_a) == home
        assert await _served(sdk_b) == hosted  # B has not heard yet (at most one sync interval)
        await _live(a).sync_once()  # A sends its spend...
        await _live(b).sync_once()  # ...B reads everyone's
        assert await _served(sdk_b) == home
        explained = (await b.post("/v1/route/explain", json={"model": "auto", "messages": HI})).json()
        # the shared counter holds both replicas' spend
        redis = Redis.from_url(REDIS_URL)
        window = budget_window("daily", datetime.now(UTC)).id
        shared = int(await redis.get(f"{{switchyard}}:cap:d:{hosted}:{window}") or 0)
        await redis.aclose()
    assert {"deployment": hosted, "reason": "spend cap reached: $0.05 daily"} in explained["excluded"]
    assert shared >= usd_to_nanos(Decimal("0.05"), round_up=False)


async def test_latency_measured_on_one_replica_ranks_fastest_on_the_other(
    upstream: FakeUpstream, tmp_path: Path, names: dict[str, str]
) -> None:
    hosted, home = names["hosted"], names["home"]
    async with (
        app_client(_config(tmp_path / "a", upstream.base_url, names)) as a,
        app_client(_config(tmp_path / "b", upstream.base_url, names)) as b,
        httpx.AsyncClient(transport=a._transport, base_url="http://gateway/v1") as http_a,
    ):
        sdk_a = _sdk(a, http_a)
        for _ in range(3):
            assert await _served(sdk_a, home) == home
        stream = await sdk_a.chat.completions.create(model=home, messages=HI, stream=True)  # type: ignore[arg-type]
        async for _ in stream:
            pass
        body = {"model": "fast", "messages": HI}
        before = (await b.post("/v1/route/explain", json=body)).json()
        await _live(a).sync_once()
        await _live(b).sync_once()
        measured = _live(b).latency.measured[home]
        after = (await b.post("/v1/route/explain", json=body)).json()
    # B served nothing: the hint ranks first until A's measurements arrive
    assert [c["deployment"] for c in before["candidates"]] == [hosted, home]
    assert [c["deployment"] for c in after["candidates"]] == [home, hosted]
    assert after["candidates"][0]["reason"].startswith("fastest: measured latency ")
    assert measured.samples == 4 and measured.ttft_samples == 1 and measured.latency_ms > 0
    assert after["measured"]["latency"][home]["answers"] == 4
    assert hosted not in after["measured"]["latency"]


async def test_redis_counters_lost_are_seeded_again_from_the_ledger(
    upstream: FakeUpstream, tmp_path: Path, names: dict[str, str]
) -> None:
    hosted, home = names["hosted"], names["home"]
    config = _config(tmp_path, upstream.base_url, names)
    async with app_client(config) as a, httpx.AsyncClient(transport=a._transport, base_url="http://gateway/v1") as http:
        sdk = _sdk(a, http)
        assert [await _served(sdk) for _ in range(2)] == [hosted, hosted]
    redis = Redis.from_url(REDIS_URL)
    keys = [k async for k in redis.scan_iter(match=f"*cap:d:{hosted}:*")]
    assert keys
    await redis.delete(*keys)  # Redis restarted without persistence
    async with app_client(config) as c, httpx.AsyncClient(transport=c._transport, base_url="http://gateway/v1") as http:
        assert await _served(_sdk(c, http)) == home  # seeded from the ledger at start
        seeded = int(await redis.get(keys[0]) or 0)
    await redis.aclose()
    assert seeded >= usd_to_nanos(Decimal("0.05"), round_up=False)
