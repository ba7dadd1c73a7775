"""Virtual keys, admission and the ledger on the request path (in-process, real SQLite)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from sqlmodel import select

from gateway.db.models import UsageRecord
from providers.tokens import count_text
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import app_client, fake_deployment, make_config

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Say hello"}]}


def _config(upstream: FakeUpstream, tmp_path: Path, *, model: str = "m0", project: dict | None = None):
    return make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "deployments": [
                fake_deployment(
                    "paid",
                    upstream.base_url,
                    model=model,
                    locality="hosted",
                    pricing={"input_per_mtok": 1000, "output_per_mtok": 2000},
                )
            ],
            "routes": [{"name": "auto", "candidates": ["paid"]}],
            "projects": [project or {"name": "team-a"}],
            "ledger": {"flush_interval_ms": 10, "spool_dir": str(tmp_path / "spool")},
            "retries": {"max_attempts_per_deployment": 1},
        }
    )


async def _issue_key(client, **body) -> str:
    response = await client.post("/admin/keys", json={"project": "team-a", "name": "k", **body})
    assert response.status_code == 201, response.text
    return response.json()["key"]


async def _ledger_rows(client) -> list[UsageRecord]:
    state = client.app.state.gateway
    await state.ledger.flush()
    async with state.db.session() as session:
        return list((await session.exec(select(UsageRecord).order_by(UsageRecord.ts))).all())


async def test_virtual_key_request_is_billed_and_recorded(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        key = await _issue_key(client)
        response = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"})
        assert response.status_code == 200
        usage = response.json()["usage"]
        expected = (Decimal(usage["prompt_tokens"]) * 1000 + Decimal(usage["completion_tokens"]) * 2000) / Decimal(10**6)
        assert Decimal(response.headers["x-switchyard-cost-usd"]) == expected
        rows = await _ledger_rows(client)
    assert len(rows) == 1
    row = rows[0]
    assert row.project == "team-a" and row.key_id and row.deployment == "paid" and row.status == 200
    assert (row.prompt_tokens, row.completion_tokens) == (usage["prompt_tokens"], usage["completion_tokens"])
    assert row.cost_usd == expected
    assert row.request_id == response.headers["x-request-id"]


async def test_revoked_key_is_refused(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        created = await client.post("/admin/keys", json={"project": "team-a", "name": "k"})
        key, key_id = created.json()["key"], created.json()["id"]
        ok = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"})
        assert ok.status_code == 200
        await client.post(f"/admin/keys/{key_id}/revoke")
        client.app.state.gateway.keys.invalidate()  # this replica; others see it within the cache TTL
        refused = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"})
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "invalid_api_key"


async def test_key_limited_to_models(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        key = await _issue_key(client, models=["paid"])
        headers = {"authorization": f"Bearer {key}"}
        allowed = await client.post("/v1/chat/completions", json={**CHAT, "model": "paid"}, headers=headers)
        denied = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
        listing = await client.get("/v1/models", headers=headers)
    assert allowed.status_code == 200
    assert denied.status_code == 404
    assert [m["id"] for m in listing.json()["data"]] == ["paid"]


async def test_budget_exhaustion_is_a_429_budget_exceeded(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        # Each request costs about $0.025 (8 prompt tokens at $1000/Mtok, 8 output at $2000/Mtok).
        key = await _issue_key(client, budget={"usd": 1, "period": "total"})
        headers = {"authorization": f"Bearer {key}"}
        statuses = []
        for _ in range(100):
            response = await client.post("/v1/chat/completions", json={**CHAT, "max_tokens": 8}, headers=headers)
            statuses.append(response.status_code)
            if response.status_code == 429:
                error = response.json()["error"]
                assert error["code"] == "budget_exceeded"
                break
        rows = await _ledger_rows(client)
    assert statuses[-1] == 429
    spent = sum(r.cost_usd for r in rows)
    assert spent <= Decimal(1)
    assert len(rows) == statuses.count(200)


async def test_rate_limit_headers_and_429(upstream: FakeUpstream, tmp_path: Path) -> None:
    project = {"name": "team-a", "limits": {"rpm": 3}}
    async with app_client(_config(upstream, tmp_path, project=project)) as client:
        key = await _issue_key(client)
        headers = {"authorization": f"Bearer {key}"}
        responses = [await client.post("/v1/chat/completions", json=CHAT, headers=headers) for _ in range(4)]
    assert [r.status_code for r in responses] == [200, 200, 200, 429]
    assert responses[0].headers["x-ratelimit-limit-requests"] == "3"
    assert responses[1].headers["x-ratelimit-remaining-requests"] == "1"
    assert responses[3].json()["error"]["code"] == "rate_limit_exceeded"
    assert int(responses[3].headers["retry-after"]) >= 1


async def test_stream_without_upstream_usage_is_counted(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path, model="nousage")) as client:
        response = await client.post(
            "/v1/chat/completions", json={**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        )
        events = [e[6:] for e in response.text.split("\n\n") if e.startswith("data: ")]
        chunks = [orjson.loads(e) for e in events if e != "[DONE]"]
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
        rows = await _ledger_rows(client)
    assert upstream.records[-1]["body"]["stream_options"] == {"include_usage": True}  # the client's own
    assert all("usage" not in c or c["usage"] is None for c in chunks)
    assert rows[-1].streamed and rows[-1].completion_tokens == count_text(text) > 0


async def test_stream_options_are_the_clients_own_and_streams_are_metered_either_way(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    config = _config(upstream, tmp_path)
    paid = config.deployments[0].model_copy(update={"stream_usage": "client"})
    async with app_client(config.model_copy(update={"deployments": [paid]})) as client:
        plain = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        asked = await client.post(
            "/v1/chat/completions", json={**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        )
        rows = await _ledger_rows(client)
    sent = [r["body"] for r in upstream.records[-2:]]
    assert "stream_options" not in sent[0]  # never forced upstream: a backend may reject it
    assert sent[1]["stream_options"] == {"include_usage": True}
    assert '"usage"' not in plain.text  # no usage field at all unless asked for
    assert '"usage":{' in asked.text
    plain_text = "".join(
        orjson.loads(e[6:])["choices"][0]["delta"].get("content", "")
        for e in plain.text.split("\n\n")
        if e.startswith("data: {") and orjson.loads(e[6:])["choices"]
    )
    assert rows[0].completion_tokens == count_text(plain_text) > 0  # counted, since not reported
    reported = next(orjson.loads(e[6:])["usage"] for e in asked.text.split("\n\n") if '"usage":{' in e)
    assert rows[1].completion_tokens == reported["completion_tokens"]  # reported, so taken as reported


async def test_hosted_streams_ask_for_usage_and_hide_what_the_client_did_not_ask_for(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:  # hosted: stream_usage defaults to always
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
        rows = await _ledger_rows(client)
    assert upstream.records[-1]["body"]["stream_options"] == {"include_usage": True}
    assert '"usage"' not in response.text  # neither the usage-only chunk nor "usage": null fields
    events = [orjson.loads(e[6:]) for e in response.text.split("\n\n") if e.startswith("data: {")]
    assert events and all(e["choices"] for e in events)
    words = " ".join(e["choices"][0]["delta"].get("content", "") for e in events).split()
    assert rows[-1].completion_tokens == len(words)  # the upstream's own count (one token a word), not tiktoken's


async def test_failed_attempts_are_in_the_ledger_at_zero_cost(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path, model="error-500")) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
        rows = await _ledger_rows(client)
    assert response.status_code == 502
    assert [(r.status, r.error_type, r.cost_usd) for r in rows] == [(502, "upstream_error", Decimal(0))]


async def test_admin_usage_report_adds_up(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        key = await _issue_key(client)
        for _ in range(3):
            await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"})
        rows = await _ledger_rows(client)
        report = (await client.get("/admin/usage", params={"project": "team-a", "group_by": "model"})).json()
    assert report["total_requests"] == 3
    assert Decimal(report["total_cost_usd"]) == sum(r.cost_usd for r in rows)


@pytest.mark.parametrize("concurrency", [12])
async def test_concurrent_requests_all_recorded(upstream: FakeUpstream, tmp_path: Path, concurrency: int) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        key = await _issue_key(client)
        responses = await asyncio.gather(
            *(
                client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"})
                for _ in range(concurrency)
            )
        )
        rows = await _ledger_rows(client)
    assert all(r.status_code == 200 for r in responses)
    assert sorted(r.request_id for r in rows) == sorted(r.headers["x-request-id"] for r in responses)


async def test_metrics_count_attempts_tokens_spend_and_refusals(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        key = await _issue_key(client)
        ok = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {key}"})
        await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": "Bearer sk-nope"})
        text = (await client.get("/metrics")).text
    usage = ok.json()["usage"]
    assert 'switchyard_backend_attempts_total{deployment="paid",locality="hosted",status="200"} 1.0' in text
    assert f'switchyard_tokens_total{{deployment="paid",kind="completion"}} {float(usage["completion_tokens"])}' in text
    assert 'switchyard_refusals_total{code="invalid_api_key",status="401"} 1.0' in text
    assert 'switchyard_cost_usd_total{deployment="paid",project="team-a"}' in text
    assert 'switchyard_circuit_open{deployment="paid"} 0.0' in text
    assert 'switchyard_ledger_rows_total{outcome="submitted"}' in text
    assert "switchyard_ledger_queue_depth " in text
