"""Faults at the socket and attacks at the front door: what the gateway does, what the client sees,
and a check that nothing was lost. Each test records its row for docs/reliability.md."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import orjson
import pytest
from sqlmodel import select

from gateway.admission import Subject
from gateway.db.models import UsageRecord
from tests.fakes.faulty_upstream import FaultyUpstream
from tests.fakes.openai_upstream import FakeUpstream
from tests.fakes.scripted_upstream import Script, ScriptedUpstream, chat_reply
from tests.helpers import app_client, fake_deployment, make_config

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 8}
PRICES = {"input_per_mtok": 1000, "output_per_mtok": 2000}
TIMEOUTS = {"connect": 1, "first_byte": 1.5, "read": 1.5, "total": 3}


@dataclass
class Rig:
    client: httpx.AsyncClient
    flaky: FaultyUpstream
    steady: FakeUpstream
    key: str
    key_id: str

    @property
    def backend_calls(self) -> int:
        """Requests that reached a backend, counted by the backends themselves."""
        return self.flaky.requests + len(self.steady.records)

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.key}"}

    async def settle(self) -> tuple[list[UsageRecord], Decimal]:
        """Every ledger row, and what is still reserved on the key once settlements are through."""
        state = self.client.app.state.gateway  # type: ignore[attr-defined]
        for _ in range(200):
            if state.accountant.settler.pending == 0:
                break
            await asyncio.sleep(0.01)
        await state.ledger.flush()
        async with state.db.session() as session:
            rows = list((await session.exec(select(UsageRecord).order_by(UsageRecord.ts))).all())
        budget = await state.admission.budget_state(Subject("key", self.key_id, Decimal(5), "total"))
        return rows, budget.reserved_usd


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    flaky, steady = FaultyUpstream(), FakeUpstream("steady")
    await flaky.start()
    await steady.start()
    config = make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "ledger": {"flush_interval_ms": 10, "spool_dir": str(tmp_path / "spool")},
            "deployments": [
                fake_deployment("flaky", flaky.base_url, pricing=PRICES, timeouts=TIMEOUTS),
                fake_deployment("steady", steady.base_url, pricing=PRICES, timeouts=TIMEOUTS),
            ],
            "routes": [{"name": "auto", "candidates": ["flaky", "steady"], "fallbacks": ["steady"]}],
            "projects": [{"name": "team"}],
            "retries": {"max_attempts_per_deployment": 2, "backoff_base_s": 0.01, "backoff_max_s": 1.5},
        }
    )
    try:
        async with app_client(config) as client:
            created = await client.post(
                "/admin/keys", json={"project": "team", "name": "k", "budget": {"usd": "5", "period": "total"}}
            )
            yield Rig(client, flaky, steady, created.json()["key"], created.json()["id"])
    finally:
        await flaky.stop()
        await steady.stop()


def _lost(rows: list[UsageRecord], reserved: Decimal, attempts: int) -> str:
    assert len(rows) == attempts, f"{len(rows)} ledger rows for {attempts} backend attempts"
    assert reserved == 0, f"${reserved} still reserved"
    assert all(r.cost_usd >= 0 for r in rows)
    return (
        f"nothing: {attempts} ledger row{'s' * (attempts > 1)} for {attempts} attempt{'s' * (attempts > 1)}, no open reservation"
    )


@pytest.mark.parametrize(
    ("fault", "case"),
    [
        ("reset_mid_body", "reset-mid-body"),
        ("garbage", "garbage"),
        ("backend-auth", "backend-auth"),
        ("first-byte", "first-byte-never-comes"),
    ],
)
async def test_a_failing_backend_falls_back_to_the_next_permitted_one(rig: Rig, record, fault: str, case: str) -> None:
    rig.flaky.fault = {"backend-auth": "unauthorized", "first-byte": "silent"}.get(fault, fault)
    response = await rig.client.post("/v1/chat/completions", json=CHAT, headers=rig.headers)
    rows, reserved = await rig.settle()
    assert response.status_code == 200 and response.headers["x-switchyard-deployment"] == "steady"
    assert response.headers["x-switchyard-fallbacks"] == "1"
    failed = [r for r in rows if r.status != 200]
    assert failed and all(r.deployment == "flaky" and r.cost_usd == 0 for r in failed)
    codes = sorted({r.error_type for r in failed})
    record(
        case,
        f"{len(failed)} attempt(s) on the faulty backend ({', '.join(codes)}), then fell back",
        "200 from the fallback, `x-switchyard-fallbacks: 1`",
        _lost(rows, reserved, rig.backend_calls),
    )


async def test_a_rate_limited_backend_is_waited_for_or_skipped_and_its_breaker_stays_closed(rig: Rig, record) -> None:
    rig.flaky.fault = "rate_limited"
    response = await rig.client.post("/v1/chat/completions", json=CHAT, headers=rig.headers)
    rows, reserved = await rig.settle()
    assert response.status_code == 200 and response.headers["x-switchyard-deployment"] == "steady"
    assert rig.flaky.requests == 2  # retried once, after the Retry-After it asked for
    assert rig.client.app.state.gateway.breakers.snapshot() == {}  # type: ignore[attr-defined]
    record(
        "rate-limited",
        "retried after the 1 s it asked for, then fell back; the breaker stays closed (429 is not ill health)",
        "200 from the fallback",
        _lost(rows, reserved, rig.backend_calls),
    )


async def test_a_dripping_backend_is_cut_off_at_its_total_deadline(rig: Rig, record) -> None:
    rig.flaky.fault = "drip"
    response = await rig.client.post("/v1/chat/completions", json=CHAT, headers=rig.headers)
    rows, reserved = await rig.settle()
    assert response.status_code == 200 and response.headers["x-switchyard-deployment"] == "steady"
    failed = [r for r in rows if r.status != 200]
    assert failed and {r.error_type for r in failed} == {"upstream_timeout"}
    record(
        "drip",
        "gave up on it at `timeouts.total` (3 s here), then fell back",
        "200 from the fallback after the deadline",
        _lost(rows, reserved, rig.backend_calls),
    )


async def test_a_stream_reset_mid_way_ends_with_an_error_event_and_is_billed_for_what_arrived(rig: Rig, record) -> None:
    rig.flaky.fault = "reset_mid_stream"
    response = await rig.client.post("/v1/chat/completions", json={**CHAT, "stream": True}, headers=rig.headers)
    rows, reserved = await rig.settle()
    events = [e[6:] for e in response.text.split("\n\n") if e.startswith("data: ")]
    assert response.status_code == 200 and response.headers["x-switchyard-deployment"] == "flaky"
    assert "[DONE]" not in events and orjson.loads(events[-1])["error"]["code"] == "upstream_protocol_error"
    text = "".join(orjson.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    assert text == "one two three"
    (row,) = rows
    assert row.status == 502 and row.streamed and row.completion_tokens == 3 and row.cost_usd > 0
    record(
        "reset-mid-stream",
        "forwarded the three chunks, then one OpenAI error event (no fallback after the first byte); billed the three",
        "three deltas, then `upstream_protocol_error`, no `[DONE]`",
        _lost(rows, reserved, rig.backend_calls),
    )


async def test_usage_a_backend_lies_about_is_replaced_by_a_count(tmp_path: Path, record) -> None:
    lie = {"prompt_tokens": -4, "completion_tokens": 10**12}
    upstream = ScriptedUpstream(Script(json=chat_reply("three words here", usage=lie)))
    await upstream.start()
    try:
        config = make_config(
            {
                "database_url": f"sqlite:///{tmp_path}/l.db",
                "ledger": {"spool_dir": str(tmp_path / "s"), "flush_interval_ms": 10},
                "deployments": [fake_deployment("liar", upstream.base_url, pricing=PRICES)],
                "routes": [{"name": "auto", "candidates": ["liar"]}],
            }
        )
        async with app_client(config) as client:
            response = await client.post("/v1/chat/completions", json=CHAT)
            await client.app.state.gateway.ledger.flush()  # type: ignore[attr-defined]
            async with client.app.state.gateway.db.session() as session:  # type: ignore[attr-defined]
                (row,) = (await session.exec(select(UsageRecord))).all()
    finally:
        await upstream.stop()
    assert response.status_code == 200 and 0 < row.prompt_tokens < 100 and 0 < row.completion_tokens <= 8
    record(
        "lying-usage",
        "logged it, counted the tokens itself (never more output than max_tokens), counted a metric",
        "the backend's answer, with an honest `x-switchyard-cost-usd`",
        "nothing: one row, positive and bounded",
    )


async def test_deep_json_is_refused_before_anything_reads_it(rig: Rig, record) -> None:
    body = orjson.dumps(CHAT)[:-1] + b', "extra": ' + b"[" * 600 + b"]" * 600 + b"}"
    response = await rig.client.post("/v1/chat/completions", content=body, headers=rig.headers)
    rows, _reserved = await rig.settle()
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"
    assert rows == [] and rig.flaky.requests == 0 and rig.client.app.state.gateway.breakers.snapshot() == {}  # type: ignore[attr-defined]
    record(
        "deep-json",
        "refused it at parse time; no backend, no breaker touched",
        "400 `invalid_json`",
        "nothing (no backend reached)",
    )


async def test_an_oversized_body_is_refused_and_the_connection_closed(rig: Rig, record) -> None:
    limit = rig.client.app.state.gateway.config.server.max_body_bytes  # type: ignore[attr-defined]
    response = await rig.client.post("/v1/chat/completions", content=b"x" * (limit + 1), headers=rig.headers)
    assert response.status_code == 413 and response.headers["connection"] == "close"
    record(
        "huge-body",
        "refused it from its Content-Length, before reading it",
        "413 `request_too_large`",
        "nothing (no backend reached)",
    )


async def test_no_max_tokens_is_capped_at_what_the_budget_affords(tmp_path: Path, record) -> None:
    upstream = FakeUpstream("rambler")
    upstream.repeat = 500
    await upstream.start()
    try:
        config = make_config(
            {
                "database_url": f"sqlite:///{tmp_path}/l.db",
                "ledger": {"spool_dir": str(tmp_path / "s"), "flush_interval_ms": 10},
                "deployments": [fake_deployment("paid", upstream.base_url, locality="hosted", pricing=PRICES)],
                "routes": [{"name": "auto", "candidates": ["paid"]}],
                "projects": [{"name": "team"}],
            }
        )
        async with app_client(config) as client:
            created = await client.post(
                "/admin/keys", json={"project": "team", "name": "k", "budget": {"usd": "0.50", "period": "total"}}
            )
            headers = {"authorization": f"Bearer {created.json()['key']}"}
            statuses = [
                (
                    await client.post(
                        "/v1/chat/completions", json={k: v for k, v in CHAT.items() if k != "max_tokens"}, headers=headers
                    )
                ).status_code
                for _ in range(5)
            ]
            await client.app.state.gateway.ledger.flush()  # type: ignore[attr-defined]
            async with client.app.state.gateway.db.session() as session:  # type: ignore[attr-defined]
                spent = sum(r.cost_usd for r in (await session.exec(select(UsageRecord))).all())
    finally:
        await upstream.stop()
    assert statuses[0] == 200 and statuses[-1] == 429 and spent <= Decimal("0.50")
    record(
        "no-max-tokens",
        "set max_tokens to what the budget still afforded and reserved exactly that",
        f"{statuses.count(200)} answer(s) cut at the cap, then 429 `budget_exceeded`",
        f"nothing; spent ${spent.normalize()} of $0.50 (the review's key spent 7x its budget)",
    )


async def test_a_caller_over_its_rpm_costs_nothing_more(tmp_path: Path, record) -> None:
    upstream = FakeUpstream("x")
    await upstream.start()
    try:
        config = make_config(
            {
                "database_url": f"sqlite:///{tmp_path}/l.db",
                "ledger": {"spool_dir": str(tmp_path / "s")},
                "deployments": [fake_deployment("d0", upstream.base_url)],
                "routes": [{"name": "auto", "candidates": ["d0"]}],
                "projects": [{"name": "team", "limits": {"rpm": 1}}],
            }
        )
        async with app_client(config) as client:
            created = await client.post("/admin/keys", json={"project": "team", "name": "k"})
            headers = {"authorization": f"Bearer {created.json()['key']}"}
            first = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
            hammer = [
                await client.post("/v1/chat/completions", content=b"\x00garbage" * 1000, headers=headers) for _ in range(20)
            ]
    finally:
        await upstream.stop()
    assert first.status_code == 200 and {r.status_code for r in hammer} == {429}
    assert len(upstream.records) == 1
    record(
        "rpm-hammer",
        "refused each from memory before reading its body (no parse, no scan, no Redis)",
        "429 `rate_limit_exceeded` with Retry-After",
        "nothing",
    )


async def test_redis_down_fails_closed(tmp_path: Path, record) -> None:
    from gateway.admission import RedisAdmission

    upstream = FakeUpstream("x")
    await upstream.start()
    try:
        config = make_config(
            {
                "database_url": f"sqlite:///{tmp_path}/l.db",
                "ledger": {"spool_dir": str(tmp_path / "s")},
                "deployments": [fake_deployment("d0", upstream.base_url)],
                "routes": [{"name": "auto", "candidates": ["d0"]}],
                "projects": [{"name": "default", "limits": {"rpm": 100}}],
            }
        )
        async with app_client(config) as client:
            state = client.app.state.gateway  # type: ignore[attr-defined]
            dead = RedisAdmission("redis://127.0.0.1:9/0", prefix="dead", timeout_s=0.5)
            state.accountant.admission = dead  # the shared store goes away under a running gateway
            try:
                response = await client.post("/v1/chat/completions", json=CHAT)
            finally:
                await dead.aclose()
    finally:
        await upstream.stop()
    assert response.status_code == 503 and response.json()["error"]["code"] == "admission_unavailable"
    assert "retry-after" in response.headers and upstream.records == []
    record(
        "redis-down",
        "admits nothing: no budget or limit can be honoured without the shared counters",
        "503 `admission_unavailable` with Retry-After",
        "nothing (no backend reached)",
    )
