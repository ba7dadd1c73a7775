"""Closed by default, and cheap refusals first: what a key holder (or a stranger) cannot see or do."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, app_client, fake_deployment, make_config

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def _config(upstream: FakeUpstream, tmp_path: Path, **server: object):
    return make_config(
        {
            "server": {"master_key": MASTER_KEY, **server},
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "deployments": [
                fake_deployment("d0", upstream.base_url),
                fake_deployment(
                    "paid", upstream.base_url, locality="hosted", pricing={"input_per_mtok": 1000, "output_per_mtok": 2000}
                ),
            ],
            "routes": [{"name": "auto", "candidates": ["d0"]}, {"name": "paid-route", "candidates": ["paid"]}],
            "projects": [{"name": "team", "limits": {"rpm": 2}}],
            "ledger": {"flush_interval_ms": 10, "spool_dir": str(tmp_path / "spool")},
        }
    )


@pytest.mark.parametrize(("path", "app_key_status"), [("/metrics", 403), ("/openapi.json", 200), ("/docs", 200)])
async def test_metrics_and_docs_need_a_key_by_default(
    upstream: FakeUpstream, tmp_path: Path, path: str, app_key_status: int
) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        anonymous = await client.get(path, headers={"authorization": ""})
        app_key = (await client.post("/admin/keys", json={"project": "team", "name": "app"})).json()["key"]
        finance_key = (await client.post("/admin/keys", json={"project": "team", "name": "fin", "role": "finance"})).json()["key"]
        with_app_key = await client.get(path, headers={"authorization": f"Bearer {app_key}"})
        with_finance = await client.get(path, headers={"authorization": f"Bearer {finance_key}"})
        with_master = await client.get(path)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "invalid_api_key"
    # spend per project is on /metrics: finance and admin keys only; the API docs: any key
    assert with_app_key.status_code == app_key_status
    assert with_finance.status_code == with_master.status_code == 200


async def test_a_trusted_network_or_an_explicit_switch_opens_them(upstream: FakeUpstream, tmp_path: Path) -> None:
    # the in-process client connects from 127.0.0.1
    async with app_client(_config(upstream, tmp_path, trusted_networks=["127.0.0.0/8"])) as client:
        assert (await client.get("/metrics", headers={"authorization": ""})).status_code == 200
    async with app_client(_config(upstream, tmp_path / "b", trusted_networks=["10.0.0.0/8"])) as client:
        assert (await client.get("/metrics", headers={"authorization": ""})).status_code == 401
    async with app_client(_config(upstream, tmp_path / "c", metrics_require_auth=False, docs_require_auth=False)) as client:
        assert (await client.get("/metrics", headers={"authorization": ""})).status_code == 200
        assert (await client.get("/openapi.json", headers={"authorization": ""})).status_code == 200


async def test_explain_honours_a_keys_model_restriction(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        created = await client.post("/admin/keys", json={"project": "team", "name": "narrow", "models": ["auto"]})
        headers = {"authorization": f"Bearer {created.json()['key']}"}
        allowed = await client.post("/v1/route/explain", json=CHAT, headers=headers)
        hidden = await client.post("/v1/route/explain", json={**CHAT, "model": "paid-route"}, headers=headers)
        real = await client.post("/v1/chat/completions", json={**CHAT, "model": "paid-route"}, headers=headers)
    assert allowed.status_code == 200
    assert hidden.status_code == real.status_code == 404
    assert hidden.json()["error"]["code"] == real.json()["error"]["code"] == "model_not_found"


async def test_a_caller_over_its_rpm_is_refused_before_its_body_is_read(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        key = (await client.post("/admin/keys", json={"project": "team", "name": "busy"})).json()["key"]
        headers = {"authorization": f"Bearer {key}"}
        assert [(await client.post("/v1/chat/completions", json=CHAT, headers=headers)).status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        seen = len(upstream.records)
        # Not even valid JSON, and a megabyte of it: had the body been read or scanned, this would be a 400.
        started = time.perf_counter()
        again = await client.post("/v1/chat/completions", content=b"{" + b"x" * 1_000_000, headers=headers)
        elapsed = time.perf_counter() - started
    assert again.status_code == 429 and again.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(again.headers["retry-after"]) <= 60
    assert len(upstream.records) == seen
    print(f"refused over-limit request in {elapsed * 1000:.2f} ms")


async def test_a_spent_budget_is_refused_before_the_body_when_no_deployment_is_free(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    config = _config(upstream, tmp_path)
    config = config.model_copy(
        update={
            "deployments": [d for d in config.deployments if d.name == "paid"],
            "routes": [r for r in config.routes if r.name == "paid-route"],
            "projects": [
                config.projects[0].model_copy(update={"limits": config.projects[0].limits.model_copy(update={"rpm": None})})
            ],
        }
    )
    async with app_client(config) as client:
        # A budget of $0.0015: less than one prompt token and one output token cost here ($0.003).
        created = await client.post(
            "/admin/keys", json={"project": "team", "name": "spent", "budget": {"usd": "0.0015", "period": "total"}}
        )
        headers = {"authorization": f"Bearer {created.json()['key']}"}
        first = await client.post("/v1/chat/completions", json={**CHAT, "model": "paid-route"}, headers=headers)
        garbage = await client.post("/v1/chat/completions", content=b"not json", headers=headers)
    assert first.status_code == 429 and first.json()["error"]["code"] == "budget_exceeded"
    # had the body been read, this would be a 400: the spent budget was known without it
    assert garbage.status_code == 429 and garbage.json()["error"]["code"] == "budget_exceeded"
    assert garbage.headers["x-should-retry"] == "false"
    assert upstream.records == []


async def test_stream_options_without_a_stream_is_a_400(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream_options": {"include_usage": True}})
    assert response.status_code == 400 and response.json()["error"]["param"] == "stream_options"


async def test_models_carry_a_creation_time(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        listing = (await client.get("/v1/models")).json()
    assert listing["data"] and all(m["created"] > 1_700_000_000 for m in listing["data"])


async def test_plain_http_client_sees_no_500_for_an_unknown_route(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        response = await client.get("/v1/nope")
    assert response.status_code == 404 and set(response.json()["error"]) == {"message", "type", "param", "code"}
