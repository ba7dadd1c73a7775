"""Hot reload under load: a valid change applies within 2 s with no failed request; an invalid
change is refused with the key path and the running policy stays."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import AUTH, MASTER_KEY, GatewayProcess, fake_deployment

pytestmark = pytest.mark.slow
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "hello"}], "max_tokens": 4}


def _write(path: Path, upstream: FakeUpstream, first: str, tmp: Path) -> None:
    config = {
        "server": {"master_key": MASTER_KEY, "reload_interval_s": 0.25},
        "database_url": f"sqlite:///{tmp}/ledger.db",
        "ledger": {"spool_dir": str(tmp / "spool")},
        "deployments": [fake_deployment("alpha", upstream.base_url), fake_deployment("beta", upstream.base_url)],
        "routes": [{"name": "auto", "candidates": ["alpha", "beta"], "rules": [{"name": f"prefer-{first}", "prefer": [first]}]}],
    }
    tmp_file = path.with_suffix(".tmp")
    tmp_file.write_text(yaml.safe_dump(config))
    tmp_file.replace(path)  # atomic, as an editor or a config-map update does it


async def test_reload_under_load(upstream: FakeUpstream, tmp_path: Path) -> None:
    config_path = tmp_path / "config.yaml"
    _write(config_path, upstream, "alpha", tmp_path)
    gateway = GatewayProcess(config_path).start()
    statuses: list[int] = []
    seen: list[tuple[float, str]] = []
    stop = asyncio.Event()

    async def load(client: httpx.AsyncClient) -> None:
        while not stop.is_set():
            response = await client.post("/v1/chat/completions", json=CHAT)
            statuses.append(response.status_code)
            seen.append((time.monotonic(), response.headers.get("x-switchyard-deployment", "")))

    try:
        async with httpx.AsyncClient(base_url=gateway.base_url, headers=AUTH, timeout=10) as client:
            workers = [asyncio.create_task(load(client)) for _ in range(4)]
            await asyncio.sleep(1.0)
            assert {d for _, d in seen} == {"alpha"}
            changed_at = time.monotonic()
            _write(config_path, upstream, "beta", tmp_path)
            await asyncio.sleep(2.5)
            # An invalid edit: refused, the beta policy stays in force.
            config_path.write_text(config_path.read_text().replace("candidates:", "candidatez:"))
            await asyncio.sleep(1.5)
            stop.set()
            await asyncio.gather(*workers)
    finally:
        gateway.stop()
    assert statuses and set(statuses) == {200}, "a request failed during reload"
    switched = [t for t, d in seen if d == "beta"]
    assert switched and switched[0] - changed_at <= 2.0
    assert all(d == "beta" for t, d in seen if t > changed_at + 2.0)
    logs = gateway.logs()
    assert "config reload refused" in logs
    assert "routes[0].candidatez: unknown key" in logs
