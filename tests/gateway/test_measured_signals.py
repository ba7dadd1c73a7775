"""The pieces behind measured routing (gateway.measured), one at a time: spend against caps and
its windows, moving averages and their Redis fold, in-flight counts, and Redis being down."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from redis.asyncio import Redis

from gateway.measured.latency import LatencyStats
from gateway.measured.live import InFlight, LiveSignals
from gateway.measured.spend import SpendCaps, caps_of
from providers.settings import DeploymentConfig, SpendCap
from tests.helpers import free_port, make_config

REDIS_URL = os.environ.get("SWITCHYARD_TEST_REDIS_MEASURED", "redis://127.0.0.1:6379/10")
NOON = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def _deployment(name: str, provider: str = "litellm", model: str = "openai/gpt-4o-mini", **extra) -> DeploymentConfig:
    return DeploymentConfig.model_validate({"name": name, "provider": provider, "model": model, "locality": "hosted", **extra})


def test_a_deployment_cap_is_reached_at_its_amount_and_lifts_with_the_next_window() -> None:
    deployments = [_deployment("mini", spend_cap={"usd": "1.00", "period": "daily"}), _deployment("other")]
    caps = SpendCaps(caps_of(deployments, {}))
    caps.record("mini", Decimal("0.60"), NOON)
    caps.record("other", Decimal("5"), NOON)  # no cap of its own
    assert caps.capped == {}
    caps.record("mini", Decimal("0.40"), NOON)
    assert caps.capped == {"mini": "spend cap reached: $1.00 daily"}
    caps.refresh(NOON + timedelta(days=1))  # a new day, a new window
    assert caps.capped == {}


def test_a_provider_cap_covers_every_deployment_of_that_provider_only() -> None:
    deployments = [
        _deployment("mini"),
        _deployment("big", model="openai/gpt-4o"),
        _deployment("claude", model="anthropic/claude-3-5-haiku"),
        _deployment("home", provider="vllm", model="llama", base_url="http://x/v1"),
    ]
    assert [d.billing_provider for d in deployments] == ["openai", "openai", "anthropic", "vllm"]
    caps = SpendCaps(caps_of(deployments, {"openai": SpendCap(usd=Decimal(2), period="monthly")}))
    caps.record("mini", Decimal("1.5"), NOON)
    caps.record("claude", Decimal("100"), NOON)
    assert caps.capped == {}
    caps.record("big", Decimal("0.5"), NOON)
    assert caps.capped == {
        "mini": "provider 'openai' spend cap reached: $2.00 monthly",
        "big": "provider 'openai' spend cap reached: $2.00 monthly",
    }


def test_seeding_sets_only_what_is_not_known_and_a_zero_cap_is_reached_at_once() -> None:
    deployments = [_deployment("mini", spend_cap={"usd": "3", "period": "monthly"}), _deployment("off", spend_cap={"usd": "0"})]
    caps = SpendCaps(caps_of(deployments, {}))
    assert caps.capped == {"off": "spend cap reached: $0.00 monthly"}
    counter = caps.caps[0].counter(NOON)
    assert caps.seed({counter: Decimal("3.5")}, NOON)[counter] == 3_500_000_000
    assert caps.capped["mini"] == "spend cap reached: $3.00 monthly"
    assert counter not in caps.seed({counter: Decimal(0)}, NOON)  # known already: kept


def test_unknown_provider_caps_and_bad_weights_are_refused_with_the_key_path() -> None:
    base = {"deployments": [{"name": "d", "provider": "litellm", "model": "openai/x", "locality": "hosted"}]}
    with pytest.raises(Exception, match=r"provider_caps\.anthropic: no deployment has provider 'anthropic'"):
        make_config({**base, "provider_caps": {"anthropic": {"usd": 1}}})
    with pytest.raises(Exception, match=r"deployments\[0\]\.weight"):
        make_config({"deployments": [{**base["deployments"][0], "weight": 0}]})
    with pytest.raises(Exception, match=r"routes\[0\]\.balance"):
        make_config({**base, "routes": [{"name": "auto", "candidates": ["d"], "balance": "random"}]})
    with pytest.raises(Exception, match=r"projects\[0\]\.on_budget_exhausted"):
        make_config({**base, "projects": [{"name": "p", "on_budget_exhausted": "shrug"}]})


def test_the_moving_average_and_its_expiry() -> None:
    now = [1000.0]
    stats = LatencyStats(alpha=0.5, max_age_s=60, clock=lambda: now[0])
    stats.observe("d", 100.0)
    stats.observe("d", 200.0, ttft_ms=40.0)
    measured = stats.measured["d"]
    assert (measured.latency_ms, measured.samples, measured.ttft_ms, measured.ttft_samples) == (150.0, 2, 40.0, 1)
    now[0] += 61
    stats.expire()
    assert stats.measured == {}


def test_in_flight_counts_never_go_below_zero() -> None:
    load = InFlight()
    load.enter("a")
    load.enter("a")
    load.leave("a")
    assert load == {"a": 1}
    load.leave("a")
    load.leave("a")
    assert load == {}


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    name = f"measured-{uuid.uuid4().hex[:8]}"
    yield name
    redis = Redis.from_url(REDIS_URL)
    keys = [k async for k in redis.scan_iter(match=f"{{{name}}}*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_replicas_fold_their_batches_into_one_shared_average(prefix: str) -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        a, b = LatencyStats(alpha=0.2, prefix=prefix), LatencyStats(alpha=0.2, prefix=prefix)
        for _ in range(3):
            a.observe("d", 100.0)
        await a.sync(redis)
        for _ in range(2):
            b.observe("d", 300.0, ttft_ms=30.0)
        await b.sync(redis)
        await a.sync(redis)  # reads what b sent
    finally:
        await redis.aclose()
    shared = a.measured["d"]
    # 100 from a's batch, then b's two answers of 300 as two steps of alpha 0.2: 100 + 0.36 * 200
    assert shared.latency_ms == pytest.approx(172.0)
    assert (shared.samples, shared.ttft_samples, shared.ttft_ms) == (5, 2, pytest.approx(30.0))
    assert b.measured["d"] == shared


async def test_spend_counts_add_up_across_replicas(prefix: str) -> None:
    deployments = [_deployment("mini", spend_cap={"usd": "1.00", "period": "monthly"})]
    redis = Redis.from_url(REDIS_URL)
    try:
        a, b = SpendCaps(caps_of(deployments, {}), prefix), SpendCaps(caps_of(deployments, {}), prefix)
        a.record("mini", Decimal("0.70"))
        b.record("mini", Decimal("0.20"))
        await a.sync(redis)
        await b.sync(redis)
        assert b.capped == {} and b.spent_nanos(b.caps[0]) == 900_000_000
        a.record("mini", Decimal("0.10"))
        await a.sync(redis)
        await b.sync(redis)
    finally:
        await redis.aclose()
    assert a.capped == b.capped == {"mini": "spend cap reached: $1.00 monthly"}


async def test_with_redis_down_spend_waits_to_be_sent_and_the_request_path_goes_on() -> None:
    config = make_config(
        {
            "redis_url": f"redis://127.0.0.1:{free_port()}/0",
            "deployments": [
                {"name": "mini", "provider": "litellm", "model": "openai/x", "locality": "hosted", "spend_cap": {"usd": "1"}}
            ],
            "measurements": {"sync_interval_s": 0.2},
        }
    )
    live = LiveSignals(config)
    await live.start(None)
    try:
        live.answered("mini", Decimal("2"), 12.0, None)  # memory only: never waits for Redis
        assert live.state.capped == {"mini": "spend cap reached: $1.00 monthly"}
        assert live.state.latency["mini"].latency_ms == 12.0
        with pytest.raises(Exception):  # noqa: B017 - whatever the client raises for a refused connection
            await live.sync_once()
        assert live.spend.spent_nanos(live.spend.caps[0]) == 2_000_000_000  # kept for the next round
    finally:
        await live.aclose()
