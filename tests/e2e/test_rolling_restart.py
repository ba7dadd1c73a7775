"""A rolling restart under load: three real replicas behind Debian's nginx (bench.cluster, with the
shipped deploy/nginx/proxy.conf), one Redis, one PostgreSQL ledger, the OpenAI SDK as clients with
retries off. Every replica is drained and restarted in turn while requests and streams keep coming:
not one client request fails, every replica exits 0, and the ledger has one row per 200.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from pathlib import Path

import openai
import pytest
from redis.asyncio import Redis

from bench.cluster import LocalCluster
from tests.db.scratch import postgres_available, scratch_postgres
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, fake_deployment, postgres_ledger, write_config

pytestmark = pytest.mark.slow

REDIS_URL = os.environ.get("SWITCHYARD_TEST_REDIS_HEALTH", "redis://127.0.0.1:6379/11")
CLIENTS = 8
MESSAGES = [{"role": "user", "content": "Say hello"}]
TIMEOUTS = {"connect": 5, "first_byte": 20, "read": 20}


class Load:
    """CLIENTS loops of SDK calls through nginx, alternating plain and streamed completions."""

    def __init__(self, base_url: str) -> None:
        self.sdk = openai.AsyncOpenAI(base_url=base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=60)
        self.running = True
        self.ok: list[str] = []  # request ids of completed requests
        self.failures: list[str] = []

    async def client(self, n: int) -> None:
        i = 0
        while self.running:
            i += 1
            try:
                if (n + i) % 2:
                    reply = await self.sdk.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES)
                    completion = reply.parse()
                    assert completion.choices[0].finish_reason == "stop"
                else:
                    reply = await self.sdk.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES, stream=True)
                    finish = None
                    async for chunk in reply.parse():
                        if chunk.choices:
                            finish = chunk.choices[0].finish_reason or finish
                    assert finish == "stop", "the stream ended without finishing"
                self.ok.append(reply.headers["x-request-id"])
            except openai.APIStatusError as exc:  # who answered (nginx or a replica), and what it said
                response = exc.response
                self.failures.append(
                    f"{type(exc).__name__}: {exc.status_code} from {response.headers.get('server')}, "
                    f"request {response.headers.get('x-request-id')}: {response.text[:300]}"
                )
            except Exception as exc:
                self.failures.append(f"{type(exc).__name__}: {exc}")


async def test_rolling_restart_under_load_fails_no_request(tmp_path: Path) -> None:
    if not await postgres_available():
        pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 (run `make services`)")
    upstream = FakeUpstream("rolling", token_delay_s=0.03)  # streams of ~0.4 s
    await upstream.start()
    project = f"rolling-{uuid.uuid4().hex[:8]}"  # this run's own admission counters in Redis
    try:
        async with scratch_postgres(prefix="switchyard_rolling") as pg_url:
            config = write_config(
                tmp_path,
                {
                    "server": {"master_key": MASTER_KEY, "drain_timeout_s": 20},
                    "database_url": pg_url,
                    "redis_url": REDIS_URL,
                    "deployments": [fake_deployment("local", upstream.base_url, model="m0", timeouts=TIMEOUTS)],
                    "routes": [{"name": "auto", "candidates": ["local"]}],
                    "projects": [{"name": project}],
                    "ledger": {"spool_dir": str(tmp_path / "spool")},
                },
            )
            cluster = LocalCluster(config, replicas=3, run_dir=tmp_path / "cluster")
            await asyncio.to_thread(cluster.start)
            try:
                load = Load(cluster.base_url)
                clients = [asyncio.create_task(load.client(n)) for n in range(CLIENTS)]
                await asyncio.sleep(1.0)  # steady state first
                before = len(load.ok)
                started = time.monotonic()
                codes = await asyncio.to_thread(cluster.rolling_restart, 0.5)
                took = time.monotonic() - started
                during = len(load.ok) - before
                await asyncio.sleep(1.0)  # and steady again after
                load.running = False
                await asyncio.wait_for(asyncio.gather(*clients), 60)
                await load.sdk.close()
            finally:
                await asyncio.to_thread(cluster.stop)
            rows = await postgres_ledger(pg_url)
    finally:
        await upstream.stop()
        redis = Redis.from_url(REDIS_URL)
        keys = [k async for k in redis.scan_iter(match=f"*:project:{project}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()

    print(
        f"\nrolling restart of 3 replicas took {took:.1f}s; {during} requests completed meanwhile, "
        f"{len(load.ok)} in all, {len(load.failures)} failed"
    )
    assert load.failures == [], load.failures[:5]
    assert codes == [0, 0, 0]
    assert during > 0, "the load must run through the restarts"
    assert len(rows) == len(load.ok)
    assert sorted(request_id for request_id, _, _ in rows) == sorted(load.ok)
    assert all(status == 200 for _, status, _ in rows)
