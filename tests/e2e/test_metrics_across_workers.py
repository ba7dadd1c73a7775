"""``switchyard serve --workers 2``: a scrape of ``/metrics`` reports the totals of both workers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
from pathlib import Path

import httpx
import pytest

from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import (
    MASTER_KEY,
    GatewayProcess,
    fake_deployment,
    start_gateways,
    stop_gateways,
    write_config,
)

pytestmark = [pytest.mark.slow]

REDIS_URL = os.environ.get("SWITCHYARD_E2E_REDIS", "redis://127.0.0.1:6379/13")
AUTH = {"authorization": f"Bearer {MASTER_KEY}"}
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8}
_SAMPLE = re.compile(r"^(?P<name>[a-z_:]+)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


def samples(text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of every sample of ``name`` in a Prometheus text exposition."""
    found = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match["name"] == name:
            found[match["labels"] or ""] = float(match["value"])
    return found


async def _fresh_connection_posts(url: str, count: int, **kwargs) -> list[httpx.Response]:
    """``count`` requests at once, each on its own connection, so both workers accept some."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=30, limits=limits) as client:
        return await asyncio.gather(*(client.post("/v1/chat/completions", **kwargs) for _ in range(count)))


async def test_a_scrape_of_any_worker_adds_up_every_worker(upstream: FakeUpstream, tmp_path: Path) -> None:
    project = f"workers-{secrets.token_hex(4)}"
    config = write_config(
        tmp_path,
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "redis_url": REDIS_URL,
            "ledger": {"spool_dir": str(tmp_path / "spool"), "flush_interval_ms": 20},
            "deployments": [fake_deployment("only", upstream.base_url, pricing={"input_per_mtok": 1, "output_per_mtok": 2})],
            "routes": [{"name": "auto", "candidates": ["only"]}],
            "projects": [{"name": project, "budget": {"usd": 5}}],
        },
    )
    gateway = GatewayProcess(config, workers=2, log_level="info")
    await start_gateways(gateway)
    try:
        answered: list[httpx.Response] = []
        pids: set[int] = set()
        for _ in range(5):  # until both workers have served some (the kernel picks who accepts)
            answered += await _fresh_connection_posts(gateway.base_url, 24, json=CHAT)
            await asyncio.sleep(0.3)
            pids = {line["pid"] for line in _request_lines(gateway) if line["path"] == "/v1/chat/completions"}
            if len(pids) == 2:
                break
        assert len(pids) == 2, "one worker served every request"
        refused = await _fresh_connection_posts(gateway.base_url, 5, json=CHAT, headers={"authorization": "Bearer sk-nope"})
        assert {r.status_code for r in answered} == {200}
        assert {r.status_code for r in refused} == {401}
        completion_tokens = sum(r.json()["usage"]["completion_tokens"] for r in answered)
        await asyncio.sleep(1.5)  # every worker re-samples its gauges each second

        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=gateway.base_url, headers=AUTH, timeout=30, limits=limits) as client:
            scrapes = [(await client.get("/metrics")).text for _ in range(8)]
    finally:
        await stop_gateways(gateway)

    n = len(answered)
    per_worker = {pid: sum(1 for line in _request_lines(gateway) if line["pid"] == pid and line["status"] == 200) for pid in pids}
    assert sum(per_worker.values()) == n
    assert all(0 < c < n for c in per_worker.values())
    for text in scrapes:
        assert samples(text, "switchyard_requests_total") == {
            'endpoint="chat",status="200"': n,
            'endpoint="chat",status="401"': 5,
        }
        assert samples(text, "switchyard_backend_attempts_total") == {'deployment="only",locality="self_hosted",status="200"': n}
        assert samples(text, "switchyard_tokens_total")['deployment="only",kind="completion"'] == completion_tokens
        assert samples(text, "switchyard_refusals_total") == {'code="invalid_api_key",status="401"': 5}
        assert sum(samples(text, "switchyard_routing_decisions_total").values()) == n
        assert samples(text, "switchyard_request_duration_seconds_count") == {'endpoint="chat"': n + 5}
        assert samples(text, "switchyard_output_tokens_per_second_count") == {'deployment="only"': n}
        assert samples(text, "switchyard_in_flight_requests") == {"": 0}
        assert samples(text, "switchyard_ledger_rows_total")['outcome="submitted"'] == n
        assert samples(text, "switchyard_circuit_open") == {'deployment="only"': 0}
        budget = samples(text, "switchyard_budget_remaining_usd")[f'project="{project}"']
        assert 0 < budget < 5
        assert samples(text, "switchyard_budget_usd") == {f'project="{project}"': 5}


def _request_lines(gateway: GatewayProcess) -> list[dict]:
    lines = []
    for raw in gateway.logs().splitlines():
        try:
            line = json.loads(raw)
        except ValueError:
            continue
        if isinstance(line, dict) and line.get("logger") == "switchyard.requests":
            lines.append(line)
    return lines
