"""Portkey's gateway as the bench starts it: reachable on 127.0.0.1 only, and every kind of request
the scenarios send (chat, embeddings, a stream) reaches the shared upstreams through it intact.

Installs ``@portkey-ai/gateway`` from the npm registry into bench/.portkey on first use (~20 s).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.portkey import exposed, listening_addresses, start_portkey
from bench.procs import Services, find_tool
from bench.streams import run_streams
from bench.targets import Target
from bench.upstreams import CHAT_REPLY, EMBED_REPLY, start_nginx, start_stream_upstream

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def portkey() -> Iterator[Target]:
    if shutil.which("node") is None or shutil.which("npm") is None or find_tool("nginx") is None:
        pytest.skip("needs node, npm and nginx")
    services = Services()
    run_dir = Path(tempfile.mkdtemp(prefix="switchyard-portkey-test-"))
    try:
        nginx = start_nginx(services, find_tool("nginx") or "nginx", run_dir)
        stream = start_stream_upstream(services, run_dir, tokens=12, interval_ms=2.0, first_token_ms=5.0)
        yield start_portkey(services, run_dir, nginx, stream)
    finally:
        services.stop_all()
        shutil.rmtree(run_dir, ignore_errors=True)


def _post(target: Target, url: str, body: dict) -> dict:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="POST", headers={"content-type": "application/json", **target.headers}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["x-portkey-provider"] == "openai"
        return json.loads(resp.read())


def test_it_listens_on_the_loopback_interface_only(portkey: Target) -> None:
    assert portkey.service is not None
    addresses = listening_addresses(portkey.service.pid)
    assert addresses
    assert exposed(addresses) == []
    assert exposed(["0.0.0.0:8787", "[::]:8787", "127.0.0.1:1"]) == ["0.0.0.0:8787", "[::]:8787"]


def test_chat_and_embeddings_reach_the_shared_upstream(portkey: Target) -> None:
    chat = _post(portkey, portkey.chat_url, {"model": "bench-model", "messages": [{"role": "user", "content": "hi"}]})
    assert chat["choices"][0]["message"]["content"] == CHAT_REPLY["choices"][0]["message"]["content"]
    embed = _post(portkey, portkey.embed_url, {"model": "bench-embed", "input": "hi"})
    assert embed["data"][0]["embedding"] == EMBED_REPLY["data"][0]["embedding"]


def test_a_stream_comes_through_whole_from_the_stream_upstream(portkey: Target) -> None:
    stats = asyncio.run(
        run_streams(
            portkey.stream_url,
            model="bench-stream",
            headers=portkey.stream_headers,
            count=2,
            concurrency=1,
            expect_tokens=12,
            interval_ms=2.0,
        )
    )
    assert stats.errors == 0, stats.error_samples
    assert stats.completed == 2
    assert stats.tokens == [12, 12]
