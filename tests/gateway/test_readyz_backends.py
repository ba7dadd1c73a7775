"""/readyz probes the self-hosted servers' own health endpoints and feeds the circuit breakers."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.wire_upstream import WireUpstream
from tests.helpers import app_client, make_config


async def test_readyz_reports_backends_and_opens_the_breaker_of_a_dead_one(tmp_path: Path) -> None:
    wire = await WireUpstream().start()
    config = make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/l.db",
            "ledger": {"spool_dir": str(tmp_path / "spool")},
            "circuit_breaker": {"failure_threshold": 1, "cooldown_s": 60},
            "deployments": [
                {
                    "name": "up",
                    "provider": "vllm",
                    "model": "served-model",
                    "base_url": wire.url("vllm", "/v1"),
                    "locality": "self_hosted",
                },
                {
                    "name": "gone",
                    "provider": "ollama",
                    "model": "llama3.2",
                    "base_url": "http://127.0.0.1:9/v1",
                    "locality": "self_hosted",
                    "timeouts": {"connect": 0.5, "first_byte": 1},
                },
            ],
            "routes": [{"name": "auto", "candidates": ["gone", "up"]}],
        }
    )
    try:
        async with app_client(config) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text  # one backend down does not take the gateway out
            assert ready.json()["checks"]["backends"] == {"up": "ok", "gone": "down"}
            assert any(r.path == "/health" for r in wire.received("vllm"))
            breakers = client.app.state.gateway.breakers  # type: ignore[attr-defined]
            assert not breakers.healthy("gone") and breakers.healthy("up")
            explain = await client.post(
                "/v1/route/explain", json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
            )
            excluded = {e["deployment"]: e["reason"] for e in explain.json()["excluded"]}
            assert "unhealthy" in excluded["gone"]
    finally:
        await wire.stop()
