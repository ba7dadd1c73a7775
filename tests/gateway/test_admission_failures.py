"""Admission under stress: bursts wait for a Redis connection; Redis gone fails closed with a 503."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import pytest

from gateway.admission import RedisAdmission, Subject
from providers.tokens import count_prompt, prompt_token_bound
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import app_client, fake_deployment, make_config


async def test_a_burst_of_concurrent_admits_shares_one_pipelined_connection() -> None:
    admission = RedisAdmission("redis://127.0.0.1:6379/12", prefix="burst-test")
    subject = Subject("key", "burst", None, "monthly", 100000, None)
    try:
        tickets = await asyncio.gather(*(admission.admit([subject], tokens=1, reserve_usd=Decimal(0)) for _ in range(300)))
        assert len({t.id for t in tickets}) == 300
        assert min(t.limits.remaining_requests for t in tickets) == 100000 - 300  # every one counted once
    finally:
        keys = await admission._redis.call("KEYS", "{burst-test}*")
        if keys:
            await admission._redis.call("DEL", *keys)
        await admission.aclose()


async def test_unreachable_redis_is_a_503_not_a_500(upstream: FakeUpstream, tmp_path: Path) -> None:
    config = make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/l.db",
            "ledger": {"spool_dir": str(tmp_path / "spool")},
            "deployments": [fake_deployment("a", upstream.base_url)],
            "routes": [{"name": "auto", "candidates": ["a"]}],
            "projects": [{"name": "default", "limits": {"rpm": 100}}],
        }
    )
    async with app_client(config) as client:
        from gateway.admission import RedisAdmission as _R

        state = client.app.state.gateway
        dead = _R("redis://127.0.0.1:9/0", prefix="dead", timeout_s=0.5)
        state.accountant.admission = dead
        try:
            response = await client.post(
                "/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
            )
        finally:
            await dead.aclose()
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "admission_unavailable"
    assert upstream.records == []


@pytest.mark.parametrize("text", ["short prompt", "naïve café " * 3000, "数据 " * 9000, "x" * 50000])
def test_prompt_token_bound_never_undercounts(text: str) -> None:
    body = {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": text}]}
    exact = count_prompt(body, "gpt-4o")
    assert prompt_token_bound(body, "gpt-4o", len(text) // 4) >= exact
