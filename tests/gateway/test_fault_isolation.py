"""One caller's bad request, or one backend's bad day, never becomes everyone's outage."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson
import pytest
from fastapi import Request

from gateway.db import Database
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import app_client, fake_deployment, make_config

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}


def _config(upstream: FakeUpstream, tmp_path: Path, **extra: object):
    return make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "deployments": [fake_deployment("d0", upstream.base_url)],
            "routes": [{"name": "auto", "candidates": ["d0"]}],
            "ledger": {"flush_interval_ms": 10, "spool_dir": str(tmp_path / "spool")},
            "circuit_breaker": {"failure_threshold": 3, "cooldown_s": 30},
            **extra,
        }
    )


@pytest.mark.parametrize("depth", [40, 300, 1200, 5000])
async def test_deep_json_is_the_callers_400_and_never_opens_a_breaker(upstream: FakeUpstream, tmp_path: Path, depth: int) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        statuses = []
        for _ in range(5):  # five were enough to open every breaker for everyone
            # written by hand: a JSON encoder refuses to produce what a hostile client can send
            body = (
                orjson.dumps(CHAT)[:-1]
                + b', "unknown_field": '
                + b'{"k": [' * (depth // 2)
                + b'"leaf"'
                + b"]}" * (depth // 2)
                + b"}"
            )
            statuses.append((await client.post("/v1/chat/completions", content=body)).status_code)
        healthy = await client.post("/v1/chat/completions", json=CHAT)
        snapshot = client.app.state.gateway.breakers.snapshot()
    expected = 200 if depth <= 64 else 400
    assert statuses == [expected] * 5
    assert healthy.status_code == 200 and snapshot == {}


async def test_upstream_429s_fall_back_but_never_open_the_breaker(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path, retries={"max_attempts_per_deployment": 1})) as client:
        await _control(upstream, "error-429")
        for _ in range(6):
            refused = await client.post("/v1/chat/completions", json=CHAT)
            assert refused.status_code == 429
        assert client.app.state.gateway.breakers.snapshot() == {}
        await _control(upstream, "error-500")
        for _ in range(3):
            await client.post("/v1/chat/completions", json=CHAT)
        assert client.app.state.gateway.breakers.snapshot() == {"d0": False}  # 5xx do


async def _control(upstream: FakeUpstream, mode: str | None) -> None:
    async with httpx.AsyncClient() as http:
        await http.post(upstream.base_url.removesuffix("/v1") + "/_control", json={"mode": mode})


async def test_an_unreachable_key_store_is_a_503_for_uncached_keys_and_cached_keys_keep_working(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        created = (await client.post("/admin/keys", json={"project": "default", "name": "warm"})).json()["key"]
        cold = (await client.post("/admin/keys", json={"project": "default", "name": "cold"})).json()["key"]
        warm = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {created}"})
        assert warm.status_code == 200
        keys = client.app.state.gateway.keys
        keys._db = Database("postgresql://postgres@127.0.0.1:9/nowhere")  # a database that is down
        keys._ttl_s = 0  # every lookup goes to the database
        try:
            outage = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {cold}"})
            cached = await client.post("/v1/chat/completions", json=CHAT, headers={"authorization": f"Bearer {created}"})
        finally:
            await keys._db.aclose()
    assert outage.status_code == 503
    assert outage.json()["error"]["code"] == "auth_unavailable" and "retry-after" in outage.headers
    assert cached.status_code == 200  # a recently valid key rides out the outage


async def test_an_unexpected_error_is_a_500_in_openai_shape_and_the_connection_survives(
    upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:

        async def boom(request: Request) -> None:
            raise RuntimeError("a bug")

        client.app.add_api_route("/boom", boom)
        response = await client.get("/boom")  # raised out of the app, this would be an exception here
        after = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 500
    error = response.json()["error"]
    assert (
        error["code"] == "internal_error"
        and "a bug" not in error["message"]
        and response.headers["x-request-id"] in error["message"]
    )
    assert after.status_code == 200


async def test_admin_bodies_are_bounded(upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(upstream, tmp_path)) as client:
        big = b'{"name": "' + b"x" * (2 * 1024 * 1024) + b'"}'
        response = await client.post("/admin/projects", content=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
