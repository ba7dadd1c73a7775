"""Budget-aware and measured routing through the gateway (issue 16, item 5), in process, with fake
upstreams and the OpenAI SDK as the client: spend caps shift traffic to self-hosted, a project
that downgrades is served by a free deployment instead of a 429, ``fastest`` follows measured
latency, and a group of equivalent deployments is balanced by weight or least in-flight."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from sqlmodel import select

from gateway.db.models import UsageRecord
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, app_client, fake_deployment, make_config

PRICES = {"input_per_mtok": 1000, "output_per_mtok": 2000}  # a dozen words cost about $0.03
HI = [{"role": "user", "content": "Say hello"}]


def _config(tmp_path: Path, deployments: list[dict[str, Any]], routes: list[dict[str, Any]], **extra: Any):
    return make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "deployments": deployments,
            "routes": routes,
            "ledger": {"flush_interval_ms": 10, "spool_dir": str(tmp_path / "spool")},
            "retries": {"max_attempts_per_deployment": 1},
            **extra,
        }
    )


@asynccontextmanager
async def _gateway(config) -> AsyncIterator[tuple[httpx.AsyncClient, openai.AsyncOpenAI]]:
    async with app_client(config) as client, httpx.AsyncClient(transport=client._transport, base_url="http://gateway/v1") as http:
        yield client, openai.AsyncOpenAI(api_key=MASTER_KEY, base_url="http://gateway/v1", http_client=http, max_retries=0)


async def _ask(sdk: openai.AsyncOpenAI, model: str = "auto", messages: list[dict[str, Any]] = HI, **kw: Any) -> httpx.Response:
    raw = await sdk.chat.completions.with_raw_response.create(model=model, messages=messages, **kw)  # type: ignore[arg-type]
    raw.parse()
    return raw.http_response


async def _rows(client: httpx.AsyncClient) -> list[UsageRecord]:
    state = client.app.state.gateway  # type: ignore[attr-defined]
    await state.ledger.flush()
    async with state.db.session() as session:
        return list((await session.exec(select(UsageRecord).order_by(UsageRecord.ts))).all())


def _capped_config(tmp_path: Path, url: str, cap: dict[str, Any] | None = None, **extra: Any):
    hosted = fake_deployment("hosted", url, model="m0", locality="hosted", pricing=PRICES, quality=5)
    if cap is not None:
        hosted["spend_cap"] = cap
    home = fake_deployment("home", url, model="m1", quality=2)
    return _config(tmp_path, [hosted, home], [{"name": "auto", "objective": "best", "candidates": ["hosted", "home"]}], **extra)


async def test_past_its_spend_cap_a_deployment_leaves_the_plan_and_traffic_goes_home(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    config = _capped_config(tmp_path, upstream.base_url, {"usd": "0.05", "period": "daily"})
    async with _gateway(config) as (client, sdk):
        served = [(await _ask(sdk)).headers["x-switchyard-deployment"] for _ in range(4)]
        explained = (await client.post("/v1/route/explain", json={"model": "auto", "messages": HI})).json()
        metrics = (await client.get("/metrics")).text
        rows = await _rows(client)
    assert 'switchyard_spend_capped{deployment="hosted"} 1.0' in metrics
    assert 'switchyard_spend_capped{deployment="home"} 0.0' in metrics
    # each answer costs ~$0.03: two reach the $0.05 cap, the rest go to the self-hosted one
    assert served == ["hosted", "hosted", "home", "home"]
    assert sum(r.cost_usd for r in rows if r.deployment == "hosted") >= 0.05
    assert [c["deployment"] for c in explained["candidates"]] == ["home"]
    assert {"deployment": "hosted", "reason": "spend cap reached: $0.05 daily"} in explained["excluded"]
    assert explained["measured"]["capped"] == {"hosted": "spend cap reached: $0.05 daily"}


async def test_a_provider_cap_covers_every_deployment_of_the_provider(upstream: FakeUpstream, tmp_path: Path) -> None:
    config = _capped_config(tmp_path, upstream.base_url, provider_caps={"openai_compatible": {"usd": "0.0", "period": "monthly"}})
    async with _gateway(config) as (client, _sdk):
        response = await client.post("/v1/chat/completions", json={"model": "auto", "messages": HI})
    # both fakes are openai_compatible: a $0 cap leaves nothing, and the 503 says why
    assert response.status_code == 503
    assert "provider 'openai_compatible' spend cap reached: $0.00 monthly" in response.json()["error"]["message"]


async def test_spend_caps_are_seeded_from_the_ledger_at_start(upstream: FakeUpstream, tmp_path: Path) -> None:
    config = _capped_config(tmp_path, upstream.base_url, {"usd": "0.05", "period": "monthly"})
    async with _gateway(config) as (_client, sdk):
        for _ in range(2):
            assert (await _ask(sdk)).headers["x-switchyard-deployment"] == "hosted"
    async with _gateway(config) as (_client, sdk):  # a restart: the ledger remembers the spend
        assert (await _ask(sdk)).headers["x-switchyard-deployment"] == "home"


def _downgrade_config(
    tmp_path: Path,
    url: str,
    on_exhausted: str,
    *,
    free: str = "home",
    budget: str = "0.12",
    paid_locality: str = "hosted",
    **extra: Any,
):
    paid = fake_deployment("paid", url, model="m0", locality=paid_locality, pricing=PRICES, quality=5)
    home = fake_deployment("home", url, model="m1", quality=2)
    free_hosted = fake_deployment("free-hosted", url, model="m2", locality="hosted", quality=1)
    deployments = [paid, home if free == "home" else free_hosted]
    return _config(
        tmp_path,
        deployments,
        [{"name": "auto", "objective": "best", "candidates": [d["name"] for d in deployments]}],
        projects=[{"name": "team", "budget": {"usd": budget, "period": "total"}, "on_budget_exhausted": on_exhausted}],
        **extra,
    )


async def test_a_project_that_downgrades_is_served_by_a_free_deployment_instead_of_a_429(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with _gateway(_downgrade_config(tmp_path, upstream.base_url, "downgrade")) as (client, sdk):
        answers = [await _ask(sdk, max_tokens=8) for _ in range(4)]
        explained = (await client.post("/v1/route/explain", json={"model": "auto", "messages": HI, "max_tokens": 8})).json()
        rows = await _rows(client)
    served = [a.headers["x-switchyard-deployment"] for a in answers]
    assert served[0] == "paid" and served[-1] == "home" and "home" in served
    downgraded = [a for a in answers if a.headers["x-switchyard-deployment"] == "home"]
    for answer in downgraded:
        assert answer.headers["x-switchyard-downgraded"] == "budget"
        assert answer.headers["x-switchyard-rule"] == "budget-downgrade"
    assert "x-switchyard-downgraded" not in answers[0].headers
    assert sum(r.cost_usd for r in rows) <= Decimal("0.12")  # never past the budget
    assert [r.rule for r in rows if r.deployment == "home"] == ["budget-downgrade"] * len(downgraded)
    assert explained["downgraded"] == "budget"
    assert [c["deployment"] for c in explained["candidates"]] == ["home"]
    assert any("on_budget_exhausted: downgrade" in e["reason"] for e in explained["excluded"])


async def test_refuse_is_the_default_and_a_downgrade_never_reaches_a_paid_or_forbidden_deployment(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with _gateway(_downgrade_config(tmp_path / "refuse", upstream.base_url, "refuse")) as (_client, sdk):
        outcomes: list[str | None] = []
        for _ in range(4):
            try:
                await _ask(sdk, max_tokens=8)
            except openai.RateLimitError as refused:
                outcomes.append(refused.code)
                break
            outcomes.append("ok")
        assert outcomes[0] == "ok" and outcomes[-1] == "budget_exceeded", outcomes
    # the only free deployment is hosted: confidential data stays off it, so the budget's 429 stands
    config = _downgrade_config(
        tmp_path / "private", upstream.base_url, "downgrade", free="free-hosted", budget="0", paid_locality="self_hosted"
    )
    before = len(upstream.records)
    async with _gateway(config) as (_client, sdk):
        card = [{"role": "user", "content": "Refund card 4111 1111 1111 1111"}]
        with pytest.raises(openai.RateLimitError):
            await _ask(sdk, messages=card, max_tokens=8)
        public = await _ask(sdk, max_tokens=8)  # public data may take the free hosted one
        assert public.headers["x-switchyard-deployment"] == "free-hosted"
    assert [r["body"]["model"] for r in upstream.records[before:]] == ["m2"]  # the paid one was never called


async def test_without_max_tokens_a_downgrading_project_is_downgraded_rather_than_cut_short(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    upstream.repeat = 5
    # $2 of output at worst without max_tokens: more than the budget, which affords a short answer
    config = _downgrade_config(tmp_path, upstream.base_url, "downgrade", budget="1", routing={"default_output_cap": 1000})
    async with _gateway(config) as (_client, sdk):
        answer = await _ask(sdk)
    assert answer.headers["x-switchyard-deployment"] == "home"
    assert upstream.records[-1]["body"]["max_tokens"] == 1000  # served in full, not truncated


async def test_fastest_follows_measured_latency_not_the_hint(upstream: FakeUpstream, tmp_path: Path) -> None:
    deployments = [
        fake_deployment("hinted-fast", upstream.base_url, model="slow-0.3", latency_ms=10),
        fake_deployment("quick", upstream.base_url, model="m0", latency_ms=500),
    ]
    routes = [{"name": "auto", "objective": "fastest", "candidates": ["hinted-fast", "quick"]}]
    config = _config(tmp_path, deployments, routes, measurements={"latency_min_samples": 2})
    async with _gateway(config) as (client, sdk):
        assert [(await _ask(sdk)).headers["x-switchyard-deployment"] for _ in range(2)] == ["hinted-fast"] * 2
        for _ in range(2):
            await _ask(sdk, model="quick")
        assert (await _ask(sdk)).headers["x-switchyard-deployment"] == "quick"
        stream = await sdk.chat.completions.create(model="quick", messages=HI, stream=True)  # type: ignore[arg-type]
        async for _ in stream:
            pass
        explained = (await client.post("/v1/route/explain", json={"model": "auto", "messages": HI})).json()
    first = explained["candidates"][0]
    assert first["deployment"] == "quick"
    assert first["reason"].startswith("fastest: measured latency ") and "moving average of 4" in first["reason"]
    measured = explained["measured"]["latency"]
    assert measured["hinted-fast"]["latency_ms"] >= 300 > measured["quick"]["latency_ms"]
    assert measured["quick"]["streams"] == 1 and measured["quick"]["ttft_ms"] is not None


def _group_config(tmp_path: Path, url: str, balance: str, weights: tuple[int, int], model: str = "m0"):
    deployments = [
        fake_deployment("llama-a", url, model=model, group="llama-70b", weight=weights[0]),
        fake_deployment("llama-b", url, model=model, group="llama-70b", weight=weights[1]),
    ]
    return _config(tmp_path, deployments, [{"name": "auto", "candidates": ["llama-a", "llama-b"], "balance": balance}])


async def test_weights_three_to_one_send_about_three_quarters_to_the_heavier(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with _gateway(_group_config(tmp_path, upstream.base_url, "weighted", (3, 1))) as (client, _sdk):
        served = Counter()
        for _ in range(400):
            response = await client.post("/v1/chat/completions", json={"model": "auto", "messages": HI, "max_tokens": 1})
            served[response.headers["x-switchyard-deployment"]] += 1
    # binomial(400, 0.75) has a standard deviation of 8.7: +-45 is over five of them
    assert 255 <= served["llama-a"] <= 345, served
    assert served["llama-a"] + served["llama-b"] == 400


async def test_least_in_flight_sends_to_the_idle_member(upstream: FakeUpstream, tmp_path: Path) -> None:
    config = _group_config(tmp_path, upstream.base_url, "least_in_flight", (5, 1), model="slow-1")
    async with _gateway(config) as (client, sdk):
        live = client.app.state.gateway.live  # type: ignore[attr-defined]
        entered = asyncio.Event()
        count = live.in_flight.enter

        def enter(name: str) -> None:
            count(name)
            entered.set()

        live.in_flight.enter = enter  # the executor counts attempts through this
        first = asyncio.create_task(_ask(sdk))
        async with asyncio.timeout(10):
            await entered.wait()
        assert live.in_flight == {"llama-a": 1}  # the heavier member took the first request
        explained = (await client.post("/v1/route/explain", json={"model": "auto", "messages": HI})).json()
        second = await _ask(sdk)
        assert (await first).headers["x-switchyard-deployment"] == "llama-a"
        assert live.in_flight == {}  # both ended: nothing left counted
    assert second.headers["x-switchyard-deployment"] == "llama-b"
    assert explained["measured"]["in_flight"] == {"llama-a": 1}
    assert explained["candidates"][0]["deployment"] == "llama-b"
    assert explained["candidates"][0]["reason"].endswith("(least in flight: 0 now)")
