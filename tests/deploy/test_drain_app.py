"""The drain inside the app (in-process): /readyz, connection: close, and what the deadline ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from sqlmodel import select

from gateway.db.models import UsageRecord
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import app_client, fake_deployment, make_config

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Say hello"}]}


@pytest.fixture
async def slow_upstream() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream("slow", token_delay_s=0.05)
    fake.repeat = 40  # ~440 tokens: about 20 s of stream, far longer than any test waits
    await fake.start()
    yield fake
    await fake.stop()


def _config(upstream: FakeUpstream, tmp_path: Path, model: str = "m0"):
    return make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "deployments": [
                fake_deployment("d0", upstream.base_url, model=model, timeouts={"connect": 2, "first_byte": 30, "read": 30})
            ],
            "routes": [{"name": "auto", "candidates": ["d0"]}],
            "ledger": {"flush_interval_ms": 10, "spool_dir": str(tmp_path / "spool")},
            "retries": {"max_attempts_per_deployment": 1},
            "server": {"master_key": "sk-test-master", "drain_timeout_s": 30},
        }
    )


async def _ledger_rows(client) -> list[UsageRecord]:
    state = client.app.state.gateway
    await state.ledger.flush()
    async with state.db.session() as session:
        return list((await session.exec(select(UsageRecord))).all())


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


def _events(text: str) -> list[str]:
    return [line[6:] for line in text.split("\n\n") if line.startswith("data: ")]


async def test_readyz_fails_and_responses_close_their_connection_once_draining(
    slow_upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with app_client(_config(slow_upstream, tmp_path)) as client:
        before = await client.get("/readyz")
        assert before.status_code == 200, before.text
        assert before.headers.get("connection") != "close"
        drain = client.app.state.drain
        drain.request()
        after = await client.get("/readyz")
        assert after.status_code == 503
        assert after.json()["status"] == "draining"
        assert after.headers["connection"] == "close"
        healthz = await client.get("/healthz")  # alive: the liveness probe must not restart a draining pod
        assert healthz.status_code == 200 and healthz.headers["connection"] == "close"
        drain.cancel_timer()


async def test_deadline_ends_a_running_stream_with_an_error_event_and_bills_it(
    slow_upstream: FakeUpstream, tmp_path: Path
) -> None:
    async with app_client(_config(slow_upstream, tmp_path)) as client:
        drain = client.app.state.drain
        streaming = asyncio.create_task(client.post("/v1/chat/completions", json={**CHAT, "stream": True}))
        await _until(lambda: drain.in_flight == 1 and len(slow_upstream.records) == 1)
        await asyncio.sleep(0.3)  # a few tokens go out
        drain.request()
        assert drain.expire() == 1
        response = await asyncio.wait_for(streaming, 10)
        assert response.status_code == 200
        events = _events(response.text)
        assert "[DONE]" not in events
        error = orjson.loads(events[-1])["error"]
        assert error["code"] == "server_shutting_down" and error["type"] == "service_unavailable_error"
        assert set(error) == {"message", "type", "param", "code"}
        sent = "".join(c["choices"][0]["delta"].get("content", "") for c in map(orjson.loads, events[:-1]) if c.get("choices"))
        assert sent, "the tokens before the deadline reached the client"
        await _until(lambda: slow_upstream.aborted_streams == 1)  # the upstream call was cancelled too
        rows = await _ledger_rows(client)
        assert len(rows) == 1 and rows[0].streamed
        assert rows[0].completion_tokens > 0  # billed for what was sent
        assert drain.in_flight == 0


async def test_deadline_answers_a_request_without_a_response_yet_with_a_503(slow_upstream: FakeUpstream, tmp_path: Path) -> None:
    async with app_client(_config(slow_upstream, tmp_path, model="slow-2")) as client:
        drain = client.app.state.drain
        waiting = asyncio.create_task(client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "req-cut"}))
        await _until(lambda: len(slow_upstream.records) == 1)
        drain.request()
        assert drain.expire() == 1
        response = await asyncio.wait_for(waiting, 10)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "server_shutting_down"
        assert response.headers["x-should-retry"] == "true"
        assert response.headers["retry-after"] == "1"
        assert response.headers["x-request-id"] == "req-cut"
        # the attempt that reached the backend is on the ledger, as ended by the shutdown
        (row,) = await _ledger_rows(client)
        assert (row.status, row.error_type, row.request_id) == (503, "server_shutting_down", "req-cut")
        assert client.app.state.gateway.runtime.in_flight == 0
