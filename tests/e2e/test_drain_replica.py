"""A replica drained by SIGTERM, as Kubernetes or compose stops it: a real ``switchyard serve``
process, a slow-streaming fake upstream, the OpenAI SDK as the client, the ledger in PostgreSQL.

1. 20 streams open, then SIGTERM: every stream completes, nothing new gets in, exit 0, and the
   ledger has exactly the 20 completed requests.
2. Streams longer than ``drain_timeout_s``: each ends with an OpenAI error event instead of being
   cut off, the process still exits 0, and every stream is billed for what was sent.
3. The same SIGTERM with ``--workers 2``.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.db.scratch import postgres_available, scratch_postgres
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import (
    MASTER_KEY,
    GatewayProcess,
    fake_deployment,
    postgres_ledger,
    write_config,
)

pytestmark = pytest.mark.slow

STREAMS = 20
TIMEOUTS = {"connect": 5, "first_byte": 20, "read": 20}
MESSAGES = [{"role": "user", "content": "Say hello"}]


def _config(tmp_path: Path, pg_url: str, upstream: FakeUpstream, drain_timeout_s: float) -> Path:
    return write_config(
        tmp_path,
        {
            "server": {"master_key": MASTER_KEY, "drain_timeout_s": drain_timeout_s},
            "database_url": pg_url,
            "deployments": [fake_deployment("local", upstream.base_url, model="m0", timeouts=TIMEOUTS)],
            "routes": [{"name": "auto", "candidates": ["local"]}],
            "ledger": {"spool_dir": str(tmp_path / "spool")},
            "retries": {"max_attempts_per_deployment": 1},
        },
    )


class OpenStream:
    """One SDK stream whose first chunk has arrived; ``finish()`` reads the rest."""

    def __init__(self, client: openai.AsyncOpenAI) -> None:
        self.client = client
        self.first = asyncio.Event()
        self.text = ""
        self.request_id = ""
        self.finish_reason: str | None = None

    async def run(self) -> None:
        response = await self.client.chat.completions.with_raw_response.create(model="auto", messages=MESSAGES, stream=True)
        self.request_id = response.headers["x-request-id"]
        async for chunk in response.parse():
            if chunk.choices:
                self.text += chunk.choices[0].delta.content or ""
                self.finish_reason = chunk.choices[0].finish_reason or self.finish_reason
            self.first.set()


async def _wait_exit(gateway: GatewayProcess, timeout: float) -> int:
    assert gateway.proc is not None
    return await asyncio.to_thread(gateway.proc.wait, timeout)


async def _refused(url: str) -> bool:
    try:
        async with httpx.AsyncClient(timeout=2) as fresh:
            await fresh.get(url)
    except httpx.ConnectError:
        return True
    return False


async def test_sigterm_during_20_streams_finishes_them_all_and_accepts_nothing_new(tmp_path: Path) -> None:
    if not await postgres_available():
        pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 (run `make services`)")
    upstream = FakeUpstream("drained", token_delay_s=0.12)
    upstream.repeat = 2  # 24 tokens, about 3 s a stream
    await upstream.start()
    try:
        async with scratch_postgres(prefix="switchyard_drain") as pg_url:
            gateway = GatewayProcess(_config(tmp_path, pg_url, upstream, drain_timeout_s=20))
            await asyncio.to_thread(gateway.start)
            try:
                sdk = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)
                keepalive = httpx.AsyncClient(base_url=gateway.base_url, timeout=5)
                assert (await keepalive.get("/readyz")).status_code == 200  # an open keep-alive connection

                streams = [OpenStream(sdk) for _ in range(STREAMS)]
                tasks = [asyncio.create_task(s.run()) for s in streams]
                await asyncio.wait_for(asyncio.gather(*(s.first.wait() for s in streams)), 20)
                assert not any(t.done() for t in tasks), "the streams must still be running at SIGTERM"

                gateway.proc.send_signal(signal.SIGTERM)
                signalled = time.monotonic()
                # /readyz on the connection opened before: 503, or the connection is gone.
                try:
                    readyz = await keepalive.get("/readyz")
                    assert readyz.status_code == 503, readyz.text
                except httpx.HTTPError:
                    pass
                # New connections are refused from the moment the listener closes (well under a second).
                while not await _refused(gateway.base_url + "/healthz"):
                    assert time.monotonic() - signalled < 2, "still accepting new connections 2 s after SIGTERM"
                    await asyncio.sleep(0.02)
                with pytest.raises(openai.APIConnectionError):
                    await sdk.chat.completions.create(model="auto", messages=MESSAGES)

                await asyncio.wait_for(asyncio.gather(*tasks), 30)  # any failed stream raises here
                code = await _wait_exit(gateway, 30)
                await keepalive.aclose()
                await sdk.close()
            finally:
                gateway.stop(kill=True)
            rows = await postgres_ledger(pg_url)
    finally:
        await upstream.stop()

    assert code == 0, gateway.logs()[-3000:]
    expected_text = " ".join(
        (["Hello", "from", "drained.", "This", "is", "a", "scripted", "answer", "with", "several", "words", "."]) * 2
    )
    for s in streams:
        assert s.text == expected_text and s.finish_reason == "stop"
    assert len(upstream.records) == STREAMS  # nothing after SIGTERM reached the backend
    assert sorted(request_id for request_id, _, _ in rows) == sorted(s.request_id for s in streams)
    assert all(status == 200 for _, status, _ in rows)


async def test_streams_past_the_drain_timeout_end_with_an_error_event_and_are_billed(tmp_path: Path) -> None:
    if not await postgres_available():
        pytest.fail("PostgreSQL is not reachable at 127.0.0.1:5432 (run `make services`)")
    upstream = FakeUpstream("long", token_delay_s=0.1)
    upstream.repeat = 30  # 360 tokens, about 36 s: far past the 1 s drain timeout
    await upstream.start()
    try:
        async with scratch_postgres(prefix="switchyard_drain") as pg_url:
            gateway = GatewayProcess(_config(tmp_path, pg_url, upstream, drain_timeout_s=1))
            await asyncio.to_thread(gateway.start)
            try:
                sdk = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)
                streams = [OpenStream(sdk) for _ in range(5)]
                tasks = [asyncio.create_task(s.run()) for s in streams]
                await asyncio.wait_for(asyncio.gather(*(s.first.wait() for s in streams)), 20)
                gateway.proc.send_signal(signal.SIGTERM)
                outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
                code = await _wait_exit(gateway, 20)
                await sdk.close()
            finally:
                gateway.stop(kill=True)
            rows = await postgres_ledger(pg_url)
    finally:
        await upstream.stop()

    assert code == 0, gateway.logs()[-3000:]
    for s, outcome in zip(streams, outcomes, strict=True):
        # The SDK turns the error event into an APIError carrying the OpenAI error body.
        assert isinstance(outcome, openai.APIError), outcome
        assert outcome.code == "server_shutting_down", outcome.body
        assert s.text and s.finish_reason is None  # tokens arrived, the answer did not finish
    assert sorted(request_id for request_id, _, _ in rows) == sorted(s.request_id for s in streams)


async def test_with_several_workers_each_worker_drains_its_streams(tmp_path: Path) -> None:
    """``--workers 2`` (uvicorn's supervisor and stock workers, with the drain chained onto their
    SIGTERM handler): every stream finishes and the supervisor exits 0."""
    upstream = FakeUpstream("workers", token_delay_s=0.1)
    upstream.repeat = 2
    await upstream.start()
    redis_url = "redis://127.0.0.1:6379/11"  # several workers need shared admission
    try:
        config = write_config(
            tmp_path,
            {
                "server": {"master_key": MASTER_KEY, "drain_timeout_s": 20},
                "database_url": f"sqlite:///{tmp_path}/ledger.db",
                "redis_url": redis_url,
                "deployments": [fake_deployment("local", upstream.base_url, model="m0", timeouts=TIMEOUTS)],
                "routes": [{"name": "auto", "candidates": ["local"]}],
                "projects": [{"name": f"workers-{tmp_path.name[-12:]}"}],
                "ledger": {"spool_dir": str(tmp_path / "spool")},
            },
        )
        gateway = GatewayProcess(config, workers=2)
        await asyncio.to_thread(gateway.start)
        try:
            sdk = openai.AsyncOpenAI(base_url=gateway.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=30)
            streams = [OpenStream(sdk) for _ in range(8)]
            tasks = [asyncio.create_task(s.run()) for s in streams]
            await asyncio.wait_for(asyncio.gather(*(s.first.wait() for s in streams)), 20)
            gateway.proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            code = await _wait_exit(gateway, 30)
            await sdk.close()
        finally:
            gateway.stop(kill=True)
    finally:
        await upstream.stop()
    assert code == 0, gateway.logs()[-3000:]
    assert all(s.finish_reason == "stop" for s in streams)
