"""Issue 4, streaming accounting, end to end: `switchyard serve` as a real process, the official
OpenAI SDK as the client, a SQLite ledger, and fake upstreams in the test's event loop.

(a) an upstream that sends no usage    -> the ledger has tiktoken's count of what the client got
(b) an upstream that sends usage last  -> the ledger has exactly that usage
(c) a client that leaves after 5 chunks of a slow stream -> the upstream call is aborted at once
    and the ledger bills tiktoken's count of what the client received
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.db.types import MONEY_SCALE
from providers.tokens import count_prompt, count_text
from tests.fakes.openai_upstream import FakeUpstream, _prompt_tokens, _words
from tests.helpers import (
    AUTH,
    GatewayProcess,
    fake_deployment,
    start_gateways,
    stop_gateways,
    write_config,
)

pytestmark = pytest.mark.slow

PRICES = {"input_per_mtok": 1000, "output_per_mtok": 2000}
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello, and then count the ways a ledger can be wrong."},
]
TOKEN_DELAY_S = 0.1
REPEAT = 40  # 40 x 12 words at 0.1 s each: a 48 s stream, cut after half a second


@dataclass
class Rig:
    gateway: GatewayProcess
    fast: FakeUpstream
    slow: FakeUpstream
    ledger: Path
    key: str

    def sdk(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(api_key=self.key, base_url=self.gateway.base_url + "/v1", max_retries=0, timeout=30)


@pytest.fixture(scope="module")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    workdir = tmp_path_factory.mktemp("stream-accounting")
    fast, slow = FakeUpstream("fast"), FakeUpstream("slow", token_delay_s=TOKEN_DELAY_S)
    slow.repeat = REPEAT
    await fast.start()
    await slow.start()
    ledger = workdir / "ledger.db"
    config = write_config(
        workdir,
        {
            "database_url": f"sqlite:///{ledger}",
            "deployments": [
                fake_deployment("with-usage", fast.base_url, model="m0", locality="hosted", pricing=PRICES),
                fake_deployment("no-usage", fast.base_url, model="nousage", locality="hosted", pricing=PRICES),
                fake_deployment("slow", slow.base_url, model="m0", locality="hosted", pricing=PRICES),
            ],
            "projects": [{"name": "streams"}],
            "ledger": {"flush_interval_ms": 20, "spool_dir": str(workdir / "spool")},
            "retries": {"max_attempts_per_deployment": 1},
        },
    )
    gateway = GatewayProcess(config, cwd=workdir)
    try:
        await start_gateways(gateway)
        async with httpx.AsyncClient(base_url=gateway.base_url, headers=AUTH, timeout=10) as admin:
            created = await admin.post("/admin/keys", json={"project": "streams", "name": "sdk"})
        assert created.status_code == 201, created.text
        yield Rig(gateway, fast, slow, ledger, created.json()["key"])
    finally:
        await stop_gateways(gateway)
        await fast.stop()
        await slow.stop()


def _row(ledger: Path, request_id: str) -> dict[str, Any] | None:
    with sqlite3.connect(ledger, timeout=5) as conn:
        conn.row_factory = sqlite3.Row
        found = conn.execute("SELECT * FROM usage_records WHERE request_id = ?", (request_id,)).fetchall()
    assert len(found) <= 1, f"{len(found)} ledger rows for one request"
    if not found:
        return None
    row = dict(found[0])
    row["cost_usd"] = Decimal(row["cost_usd"]).scaleb(-MONEY_SCALE)  # SQLite keeps integer 1e-10 USD units
    return row


async def ledger_row(rig: Rig, request_id: str, timeout: float = 5.0) -> dict[str, Any]:
    """The request's ledger row, once the batched writer (flush every 20 ms) has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = await asyncio.to_thread(_row, rig.ledger, request_id)
        if row is not None:
            return row
        await asyncio.sleep(0.05)
    pytest.fail(f"no ledger row for {request_id} after {timeout}s\n{rig.gateway.logs()[-3000:]}")


def _cost(prompt: int, completion: int) -> Decimal:
    return (Decimal(prompt) * PRICES["input_per_mtok"] + Decimal(completion) * PRICES["output_per_mtok"]) / Decimal(10**6)


async def test_stream_without_upstream_usage_is_billed_on_tiktokens_count(rig: Rig) -> None:
    rid = f"e2e-nousage-{uuid.uuid4().hex[:8]}"
    body = {"model": "no-usage", "messages": MESSAGES}
    stream = await rig.sdk().chat.completions.create(**body, stream=True, extra_headers={"x-request-id": rid})
    received = ""
    async for chunk in stream:
        assert chunk.usage is None  # the upstream sent none, and the client did not ask for any
        if chunk.choices and chunk.choices[0].delta.content:
            received += chunk.choices[0].delta.content
    assert received == " ".join(_words("fast"))

    row = await ledger_row(rig, rid)
    assert rig.fast.records[-1]["body"]["stream_options"] == {"include_usage": True}  # the gateway asked anyway
    assert row["completion_tokens"] == count_text(received, "nousage") > 0
    assert row["prompt_tokens"] == count_prompt(body, "nousage")
    assert (row["status"], bool(row["streamed"]), row["deployment"]) == (200, True, "no-usage")
    assert row["cost_usd"] == _cost(row["prompt_tokens"], row["completion_tokens"])


@pytest.mark.parametrize("client_asks_usage", [True, False], ids=["client-asks-usage", "client-does-not"])
async def test_stream_with_usage_in_the_last_chunk_is_billed_exactly_on_it(rig: Rig, client_asks_usage: bool) -> None:
    rid = f"e2e-usage-{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {"model": "with-usage", "messages": MESSAGES}
    if client_asks_usage:
        body["stream_options"] = {"include_usage": True}
    stream = await rig.sdk().chat.completions.create(**body, stream=True, extra_headers={"x-request-id": rid})
    usages = [chunk.usage async for chunk in stream if chunk.usage is not None]

    upstream_body = rig.fast.records[-1]["body"]
    words = _words("fast")
    # What the fake upstream reported in its last chunk (its own count, not tiktoken's).
    sent = {"prompt_tokens": _prompt_tokens(upstream_body), "completion_tokens": len(words)}
    assert sent["prompt_tokens"] != count_prompt(body, "m0")  # so matching it proves the upstream's numbers were used
    if client_asks_usage:
        assert len(usages) == 1
        assert (usages[0].prompt_tokens, usages[0].completion_tokens) == (sent["prompt_tokens"], sent["completion_tokens"])
    else:
        assert usages == []  # metered by the gateway, not forwarded

    row = await ledger_row(rig, rid)
    assert (row["prompt_tokens"], row["completion_tokens"]) == (sent["prompt_tokens"], sent["completion_tokens"])
    assert (row["status"], bool(row["streamed"])) == (200, True)
    assert row["cost_usd"] == _cost(sent["prompt_tokens"], sent["completion_tokens"])


async def test_client_disconnect_after_five_chunks_aborts_upstream_and_bills_what_was_received(rig: Rig) -> None:
    rid = f"e2e-disconnect-{uuid.uuid4().hex[:8]}"
    body = {"model": "slow", "messages": MESSAGES}
    aborted_before = rig.slow.aborted_streams
    stream = await rig.sdk().chat.completions.create(**body, stream=True, extra_headers={"x-request-id": rid})
    deltas: list[str] = []
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            deltas.append(chunk.choices[0].delta.content)
            if len(deltas) == 5:
                break
    await stream.close()  # the client goes away mid-stream
    closed_at = time.monotonic()

    while rig.slow.aborted_streams == aborted_before and time.monotonic() - closed_at < 5:
        await asyncio.sleep(0.01)
    aborted_after_s = time.monotonic() - closed_at
    assert rig.slow.aborted_streams == aborted_before + 1, "the upstream stream was not aborted"
    # The fake notices at its next write (<= one token delay); the rest is the gateway's reaction.
    assert aborted_after_s < 1.0 + TOKEN_DELAY_S, f"upstream aborted only {aborted_after_s:.2f}s after the client left"

    row = await ledger_row(rig, rid)
    received = "".join(deltas)
    words = _words("slow") * REPEAT
    assert received == " ".join(words[:5])
    # The gateway bills what it relayed. The client closed right after reading chunk 5, so the
    # gateway has normally seen exactly those 5; at most chunk 6 may have been in flight (read
    # from the upstream, not yet delivered) when the disconnect was noticed. 0.1 s between
    # chunks makes that rare, but it is not a billing error, so it is tolerated.
    billable = {count_text(received, "m0"), count_text(received + " " + words[5], "m0")}
    assert row["completion_tokens"] in billable, (row["completion_tokens"], billable)
    assert row["prompt_tokens"] == count_prompt(body, "m0")
    assert (row["status"], bool(row["streamed"])) == (200, True)
    assert row["cost_usd"] == _cost(row["prompt_tokens"], row["completion_tokens"])
    assert len(words) > 50  # the answer was far from over: the bill is for 5 chunks, not the whole answer
