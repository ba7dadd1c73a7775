"""Budgets that cannot overshoot: the gateway sets max_tokens when the client does not, reserves
exactly that, and never bills more output than it allowed, whatever the upstream says."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from sqlmodel import select

from gateway.db.models import UsageRecord
from tests.fakes.openai_upstream import FakeUpstream
from tests.fakes.scripted_upstream import Script, ScriptedUpstream, chat_reply
from tests.helpers import app_client, fake_deployment, make_config

PRICES = {"input_per_mtok": 1000, "output_per_mtok": 2000}  # $0.002 an output token
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Tell me everything."}]}


def _config(base_url: str, tmp_path: Path, *, context_window: int = 100_000, output_cap: int = 4096):
    return make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "deployments": [
                fake_deployment("paid", base_url, model="m0", locality="hosted", pricing=PRICES, context_window=context_window)
            ],
            "routing": {"default_output_cap": output_cap},
            "routes": [{"name": "auto", "candidates": ["paid"]}],
            "projects": [{"name": "team"}],
            "ledger": {"flush_interval_ms": 10, "spool_dir": str(tmp_path / "spool")},
            "retries": {"max_attempts_per_deployment": 1},
        }
    )


async def _key(client, budget: str) -> dict[str, str]:
    created = await client.post(
        "/admin/keys", json={"project": "team", "name": "k", "budget": {"usd": budget, "period": "total"}}
    )
    assert created.status_code == 201, created.text
    return {"authorization": f"Bearer {created.json()['key']}"}


async def _rows(client) -> list[UsageRecord]:
    state = client.app.state.gateway
    await state.ledger.flush()
    async with state.db.session() as session:
        return list((await session.exec(select(UsageRecord))).all())


async def test_a_key_without_max_tokens_never_spends_past_its_budget(tmp_path: Path) -> None:
    upstream = FakeUpstream("rambler")
    upstream.repeat = 400  # 4,800 words unless max_tokens stops it: $9.60 an answer at these prices
    await upstream.start()
    try:
        async with app_client(_config(upstream.base_url, tmp_path, output_cap=100)) as client:
            headers = await _key(client, "1.00")
            statuses, caps = [], []
            for _ in range(40):
                response = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
                statuses.append(response.status_code)
                if response.status_code != 200:
                    assert response.json()["error"]["code"] == "budget_exceeded"
                    break
                caps.append(upstream.records[-1]["body"]["max_tokens"])
            rows = await _rows(client)
    finally:
        await upstream.stop()
    assert statuses[-1] == 429 and statuses.count(200) == len(caps) >= 4
    spent = sum(r.cost_usd for r in rows)
    assert Decimal("0.8") < spent <= Decimal("1.00")  # the review's $5 key spent $36; this one stops at its budget
    # the configured default while the budget is ample, then what is left of it
    assert caps[:4] == [100, 100, 100, 100] and caps[-1] < 100
    assert [r.completion_tokens for r in sorted(rows, key=lambda r: r.ts)] == caps


async def test_the_cap_is_the_default_when_the_budget_is_ample_and_the_window_when_smaller(tmp_path: Path) -> None:
    upstream = FakeUpstream("short")
    await upstream.start()
    try:
        async with app_client(_config(upstream.base_url, tmp_path)) as client:
            headers = await _key(client, "1000")
            ok = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
            assert ok.status_code == 200
            assert upstream.records[-1]["body"]["max_tokens"] == 4096  # routing.default_output_cap
            explicit = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 7}, headers=headers)
            assert explicit.status_code == 200 and upstream.records[-1]["body"]["max_tokens"] == 7
            completion = await client.post("/v1/completions", json={"model": "auto", "prompt": "Once"}, headers=headers)
            assert completion.status_code == 200 and upstream.records[-1]["body"]["max_tokens"] == 16  # OpenAI's default
        async with app_client(_config(upstream.base_url, tmp_path / "small", context_window=300)) as client:  # no budget
            await client.post("/v1/chat/completions", json=CHAT)
            cap = upstream.records[-1]["body"]["max_tokens"]
            assert 250 < cap < 300  # the window minus the prompt
    finally:
        await upstream.stop()


async def test_an_explicit_max_tokens_the_budget_cannot_cover_is_refused_not_shrunk(tmp_path: Path) -> None:
    upstream = FakeUpstream("x")
    await upstream.start()
    try:
        async with app_client(_config(upstream.base_url, tmp_path)) as client:
            headers = await _key(client, "0.01")  # five output tokens' worth
            response = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 1000}, headers=headers)
        assert response.status_code == 429 and response.json()["error"]["code"] == "budget_exceeded"
        assert response.headers["x-should-retry"] == "false"
        assert upstream.records == []
    finally:
        await upstream.stop()


@pytest.mark.parametrize(
    ("usage", "why"),
    [
        ({"prompt_tokens": 5, "completion_tokens": -40, "total_tokens": -35}, "negative"),
        ({"prompt_tokens": "5", "completion_tokens": "many"}, "not numbers"),
        ({"prompt_tokens": 5, "completion_tokens": 10**15}, "absurd"),
        ({"prompt_tokens": 5.5, "completion_tokens": 2}, "a float"),
        ({"prompt_tokens": 5, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 99}}, "more cached than prompt"),
    ],
)
async def test_usage_an_upstream_lies_about_is_counted_instead_and_never_stored_raw(
    tmp_path: Path, usage: dict, why: str
) -> None:
    upstream = ScriptedUpstream(Script(json=chat_reply("four words right here", usage=usage)))
    await upstream.start()
    try:
        async with app_client(_config(upstream.base_url, tmp_path)) as client:
            headers = await _key(client, "5")
            response = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 50}, headers=headers)
            rows = await _rows(client)
            state = client.app.state.gateway
            metrics = state.metrics.render().decode()
    finally:
        await upstream.stop()
    assert response.status_code == 200, why
    (row,) = rows
    assert row.prompt_tokens > 0 and 0 < row.completion_tokens <= 50, why
    assert row.cost_usd > 0 and Decimal(response.headers["x-switchyard-cost-usd"]) == row.cost_usd
    assert 'switchyard_upstream_usage_rejected_total{deployment="paid"} 1.0' in metrics


async def test_more_output_than_the_cap_is_billed_at_the_cap(tmp_path: Path) -> None:
    lie = {"prompt_tokens": 5, "completion_tokens": 5000, "total_tokens": 5005}
    upstream = ScriptedUpstream(Script(json=chat_reply("short", usage=lie)))
    await upstream.start()
    try:
        async with app_client(_config(upstream.base_url, tmp_path)) as client:
            headers = await _key(client, "5")
            response = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 20}, headers=headers)
            rows = await _rows(client)
    finally:
        await upstream.stop()
    assert response.status_code == 200
    assert rows[0].completion_tokens == 20


@pytest.mark.parametrize(
    "tool_calls",
    [7, "not a list", [None, 3, "x"], [{"function": 5}], [{"function": {"name": 5, "arguments": {"a": [1, {"b": None}]}}}]],
)
async def test_malformed_tool_calls_after_a_successful_call_are_answered_and_recorded(tmp_path: Path, tool_calls: object) -> None:
    upstream = ScriptedUpstream(Script(json=chat_reply("", tool_calls=tool_calls, finish_reason="tool_calls")))
    await upstream.start()
    try:
        async with app_client(_config(upstream.base_url, tmp_path)) as client:
            response = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 10})
            rows = await _rows(client)
    finally:
        await upstream.stop()
    assert response.status_code == 200  # the upstream's answer, as it sent it
    assert len(rows) == 1 and rows[0].status == 200 and rows[0].cost_usd >= 0
