"""Issue 4, budget concurrency across replicas, end to end.

Three `switchyard serve` processes share one Redis (admission) and one scratch Postgres database
(ledger) and route to one fake upstream with a known price. One key with a $1.00 total budget;
240 requests at concurrency 60, round-robin over the replicas. Admission is one Redis Lua script
per request, so the replicas together must not spend past the budget by more than one request's
worst case, and every answered request must be in the ledger exactly once.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from providers.tokens import prompt_token_bound
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

# A Redis database of its own; the gateway's keys live under "{switchyard}:", and the test's keys
# are told apart by the key id (fresh per run), so the cleanup deletes exactly this run's keys.
REDIS_URL = os.environ.get("SWITCHYARD_E2E_REDIS", "redis://127.0.0.1:6379/14")
REPLICAS, REQUESTS, CONCURRENCY = 3, 240, 60
BUDGET = Decimal("1.00")
PRICES = {"input_per_mtok": 1000, "output_per_mtok": 2000}
TIMEOUTS = {"connect": 5, "first_byte": 15, "read": 15}  # generous: the machine is shared
MAX_TOKENS = 16
BODY = {"model": "paid", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": MAX_TOKENS}
ERROR_FIELDS = {"message", "type", "param", "code"}


def worst_case_usd(body: dict) -> Decimal:
    """One request's worst case, as admission reserves it: the prompt's bound + max_tokens."""
    prompt = prompt_token_bound(body, "m0", 0)
    return (Decimal(prompt) * PRICES["input_per_mtok"] + Decimal(MAX_TOKENS) * PRICES["output_per_mtok"]) / Decimal(10**6)


async def _delete_redis_keys(key_id: str) -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        keys = [k async for k in redis.scan_iter(match=f"*:key:{key_id}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


@pytest.mark.parametrize("client_sets_max_tokens", [True, False], ids=["max_tokens", "no-max_tokens"])
async def test_three_replicas_keep_a_shared_budget(tmp_path: Path, client_sets_max_tokens: bool) -> None:
    """Without max_tokens the fake answers 600 words ($1.20 at these prices, more than the whole
    budget): only the cap the gateway sets, from what the budget still affords, can hold it."""
    body = BODY if client_sets_max_tokens else {k: v for k, v in BODY.items() if k != "max_tokens"}
    if not await postgres_available():
        pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 (run `make services`)")
    redis = Redis.from_url(REDIS_URL)
    try:
        await redis.ping()
    except Exception as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} (run `make services`): {exc}")
    finally:
        await redis.aclose()

    project = f"e2e-budget-{uuid.uuid4().hex[:8]}"
    upstream = FakeUpstream("priced")
    upstream.repeat = 1 if client_sets_max_tokens else 50
    await upstream.start()
    key_id = None
    try:
        async with scratch_postgres(prefix="switchyard_e2e") as pg_url:
            config = write_config(
                tmp_path,
                {
                    "database_url": pg_url,
                    "redis_url": REDIS_URL,
                    "deployments": [
                        fake_deployment(
                            "paid", upstream.base_url, model="m0", locality="hosted", pricing=PRICES, timeouts=TIMEOUTS
                        )
                    ],
                    "projects": [{"name": project}],
                    "ledger": {"spool_dir": str(tmp_path / "spool")},
                    "retries": {"max_attempts_per_deployment": 1},
                },
            )
            gateways = [GatewayProcess(config) for _ in range(REPLICAS)]
            try:
                await start_gateways(*gateways)
                async with httpx.AsyncClient(
                    timeout=30, limits=httpx.Limits(max_connections=2 * CONCURRENCY, max_keepalive_connections=2 * CONCURRENCY)
                ) as client:
                    created = await client.post(
                        gateways[0].base_url + "/admin/keys",
                        headers=AUTH,
                        json={"project": project, "name": "shared", "budget": {"usd": str(BUDGET), "period": "total"}},
                    )
                    assert created.status_code == 201, created.text
                    key_id, key = created.json()["id"], created.json()["key"]
                    responses = await _fire(client, [g.base_url for g in gateways], key, body)
            finally:
                await stop_gateways(*gateways)  # graceful: each ledger writer flushes before exit
            for g in gateways:  # uvicorn re-raises SIGTERM after its graceful shutdown
                assert g.proc is not None and g.proc.returncode in (0, -signal.SIGTERM), g.logs()[-3000:]
            rows = await postgres_ledger(pg_url)
    finally:
        await upstream.stop()
        if key_id is not None:
            await _delete_redis_keys(key_id)

    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    worst = worst_case_usd(body)
    spent = sum((cost for _, _, cost in rows), Decimal(0))
    print(f"\n{len(ok)} x 200, {len(refused)} x 429; ledger: {len(rows)} rows, ${spent} (budget ${BUDGET}, worst case ${worst})")

    # The budget really binds, and it binds across replicas: without shared admission each of
    # the three would let about $1 through.
    assert ok and refused
    assert spent <= BUDGET, f"spent ${spent} > budget ${BUDGET}"
    # Every rejection is a 429 in OpenAI's error shape, for the budget.
    for r in refused:
        assert r.status_code == 429, (r.status_code, r.text)
        error = r.json()["error"]
        assert set(error) == ERROR_FIELDS and isinstance(error["message"], str) and error["message"]
        assert error["code"] == "budget_exceeded", error
    # The ledger has every answered request, once: 200s == rows with status 200 == all rows
    # (the fake upstream never fails, so there are no failed-attempt rows).
    assert len(ok) == sum(1 for _, status, _ in rows if status == 200) == len(rows)
    ids = Counter(request_id for request_id, _, _ in rows)
    assert ids == Counter(r.headers["x-request-id"] for r in ok), "ledger request ids differ from the answered requests"
    # And the ledger's money is what the clients were told, to the last digit.
    assert spent == sum((Decimal(r.headers["x-switchyard-cost-usd"]) for r in ok), Decimal(0))
    if client_sets_max_tokens:  # the test's premise: the fake's usage never exceeds what admission reserved
        assert max(cost for _, _, cost in rows) <= worst
    else:  # every answer was cut at the cap the gateway set, so no single one could spend the budget
        assert all(len(r.json()["choices"][0]["message"]["content"].split()) < 600 for r in ok)
        assert max(cost for _, _, cost in rows) < BUDGET


async def _fire(client: httpx.AsyncClient, bases: list[str], key: str, body: dict) -> list[httpx.Response]:
    """REQUESTS requests, CONCURRENCY at a time, request i to replica i mod 3."""
    urls = itertools.cycle(base + "/v1/chat/completions" for base in bases)
    jobs = iter([next(urls) for _ in range(REQUESTS)])
    headers = {"authorization": f"Bearer {key}"}
    responses: list[httpx.Response] = []

    async def worker() -> None:
        for url in jobs:
            responses.append(await client.post(url, json=body, headers=headers))

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    assert len(responses) == REQUESTS
    return responses
