"""Shared circuit breakers across three real replicas (one Redis, one PostgreSQL ledger).

The preferred backend dies. Traffic through replica 1 alone opens its breaker; replicas 2 and 3,
which never sent it a request, skip it on their very first request: no attempt on the dead
backend, no fallback, no failed-attempt row in the ledger.
"""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from tests.db.scratch import postgres_available, scratch_postgres
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import (
    AUTH,
    GatewayProcess,
    fake_deployment,
    postgres_ledger,
    start_gateways,
    stop_gateways,
    write_config,
)

pytestmark = pytest.mark.slow

REDIS_URL = os.environ.get("SWITCHYARD_TEST_REDIS_HEALTH", "redis://127.0.0.1:6379/11")
THRESHOLD = 3
BODY = {"model": "auto", "messages": [{"role": "user", "content": "Say hello"}]}
TIMEOUTS = {"connect": 2, "first_byte": 10, "read": 10}


async def _circuit_open(client: httpx.AsyncClient, base_url: str, deployment: str) -> bool:
    text = (await client.get(base_url + "/metrics")).text
    match = re.search(rf'^switchyard_circuit_open\{{deployment="{re.escape(deployment)}"\}} (\S+)$', text, re.MULTILINE)
    return match is not None and float(match.group(1)) == 1.0


async def test_a_breaker_opened_on_one_replica_makes_the_others_skip_the_backend_at_once(tmp_path: Path) -> None:
    if not await postgres_available():
        pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 (run `make services`)")
    suffix = uuid.uuid4().hex[:8]
    primary, backup = f"primary-{suffix}", f"backup-{suffix}"  # this run's fields in the shared hash
    dying, spare = FakeUpstream("primary"), FakeUpstream("backup")
    await dying.start()
    await spare.start()
    try:
        async with scratch_postgres(prefix="switchyard_health") as pg_url:
            config = write_config(
                tmp_path,
                {
                    "database_url": pg_url,
                    "redis_url": REDIS_URL,
                    "deployments": [
                        fake_deployment(primary, dying.base_url, model="m0", quality=5, timeouts=TIMEOUTS),
                        fake_deployment(backup, spare.base_url, model="m1", quality=1, timeouts=TIMEOUTS),
                    ],
                    "routes": [{"name": "auto", "objective": "best", "candidates": [primary, backup]}],
                    "retries": {"max_attempts_per_deployment": 1},
                    "circuit_breaker": {"failure_threshold": THRESHOLD, "cooldown_s": 120, "sync_interval_s": 0.2},
                    "ledger": {"spool_dir": str(tmp_path / "spool")},
                },
            )
            replicas = [GatewayProcess(config) for _ in range(3)]
            try:
                await start_gateways(*replicas)
                async with httpx.AsyncClient(timeout=20, headers=AUTH) as client:
                    healthy = await client.post(replicas[0].base_url + "/v1/chat/completions", json=BODY)
                    assert healthy.headers["x-switchyard-deployment"] == primary  # the preferred one, while it lives

                    await dying.stop()  # the backend dies: connections are refused from now on
                    first_replica: list[httpx.Response] = []
                    for _ in range(THRESHOLD + 2):
                        response = await client.post(replicas[0].base_url + "/v1/chat/completions", json=BODY)
                        assert response.status_code == 200, response.text
                        first_replica.append(response)
                        if response.headers["x-switchyard-fallbacks"] == "0":
                            break  # replica 1's breaker is open: it goes straight to the backup
                    assert [r.headers["x-switchyard-fallbacks"] for r in first_replica] == ["1"] * THRESHOLD + ["0"]

                    opened = time.monotonic()
                    for replica in replicas[1:]:  # no routed request yet: read the breaker gauge only
                        while not await _circuit_open(client, replica.base_url, primary):
                            assert time.monotonic() - opened < 5, "the open circuit did not reach the other replicas"
                            await asyncio.sleep(0.05)
                    print(f"\nshared breaker reached the other replicas in {time.monotonic() - opened:.2f}s")

                    firsts = [await client.post(r.base_url + "/v1/chat/completions", json=BODY) for r in replicas[1:]]
                for response in firsts:
                    assert response.status_code == 200, response.text
                    assert response.headers["x-switchyard-deployment"] == backup
                    assert response.headers["x-switchyard-fallbacks"] == "0"
            finally:
                await stop_gateways(*replicas)
            rows = await postgres_ledger(pg_url)
    finally:
        await spare.stop()
        redis = Redis.from_url(REDIS_URL)
        await redis.hdel("{switchyard}:breakers", primary, backup)
        await redis.aclose()

    # Failed attempts on the dead backend: only replica 1's first THRESHOLD requests made any.
    failed = {request_id for request_id, status, _ in rows if status != 200}
    assert failed == {r.headers["x-request-id"] for r in first_replica[:THRESHOLD]}
    assert {r.headers["x-request-id"] for r in firsts} <= {request_id for request_id, status, _ in rows if status == 200}
