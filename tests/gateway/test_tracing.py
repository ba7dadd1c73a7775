"""Traces of the request path, read from OpenTelemetry's in-memory exporter (in-process gateway,
fake upstreams that record the headers they receive)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.config import GatewayConfig
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import (
    AUTH,
    MASTER_KEY,
    ROOT,
    app_client,
    fake_deployment,
    make_config,
)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 20, "temperature": 0.5}


@pytest.fixture
async def pair() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream]]:
    """A first choice that answers 500 and a fallback that answers."""
    broken, good = FakeUpstream("broken"), FakeUpstream("good")
    await broken.start()
    await good.start()
    broken.mode = "error-500"
    yield broken, good
    await broken.stop()
    await good.stop()


def _config(broken: FakeUpstream, good: FakeUpstream, **extra: Any) -> GatewayConfig:
    prices = {"input_per_mtok": 1, "output_per_mtok": 2}
    return make_config(
        {
            "deployments": [
                fake_deployment("first", broken.base_url, model="broken-model", pricing=prices),
                fake_deployment("second", good.base_url, model="good-model", pricing=prices),
            ],
            "routes": [{"name": "auto", "candidates": ["first", "second"], "objective": "cheapest"}],
            "retries": {"max_attempts_per_deployment": 1},
            **extra,
        }
    )


def _tree(spans: list[ReadableSpan]) -> tuple[ReadableSpan, list[ReadableSpan]]:
    (server,) = [s for s in spans if s.kind == SpanKind.SERVER]
    children = sorted(
        (s for s in spans if s.parent is not None and s.parent.span_id == server.context.span_id), key=lambda s: s.start_time
    )
    return server, children


async def test_a_request_that_falls_back_once_yields_the_span_tree_and_genai_attributes(pair) -> None:
    broken, good = pair
    exporter = InMemorySpanExporter()
    async with app_client(_config(broken, good), span_processor=SimpleSpanProcessor(exporter)) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-deployment"] == "second"
    spans = exporter.get_finished_spans()
    server, children = _tree(spans)
    assert len(spans) == 1 + len(children)  # nothing outside the tree
    assert [c.name for c in children] == ["auth", "routing", "admission", "chat broken-model", "chat good-model", "accounting"]
    assert {s.context.trace_id for s in spans} == {server.context.trace_id}

    assert server.name == "POST /v1/chat/completions"
    usage = response.json()["usage"]
    attrs = dict(server.attributes)
    expected = {
        "http.request.method": "POST",
        "http.response.status_code": 200,
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "auto",
        "gen_ai.request.max_tokens": 20,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.response.model": "good-model",
        "gen_ai.provider.name": "openai_compatible",
        "gen_ai.usage.input_tokens": usage["prompt_tokens"],
        "gen_ai.usage.output_tokens": usage["completion_tokens"],
        "switchyard.route": "auto",
        "switchyard.rule": "-",
        "switchyard.sensitivity": "public",
        "switchyard.task": response.headers["x-switchyard-task"],
        "switchyard.deployment": "second",
        "switchyard.fallbacks": 1,
        "switchyard.attempts": 2,
        "switchyard.request_id": response.headers["x-request-id"],
    }
    assert {k: attrs.get(k) for k in expected} == expected
    assert attrs["switchyard.cost_usd"] == pytest.approx(float(response.headers["x-switchyard-cost-usd"]))
    assert server.status.status_code == StatusCode.UNSET

    failed, answered = children[3], children[4]
    assert failed.kind == answered.kind == SpanKind.CLIENT
    assert failed.status.status_code == StatusCode.ERROR
    assert "HTTP 500" in (failed.status.description or "")
    assert failed.attributes["error.type"] == "upstream_error"
    assert failed.attributes["http.response.status_code"] == 500
    assert failed.attributes["gen_ai.request.model"] == "broken-model"
    assert failed.attributes["switchyard.deployment"] == "first"
    assert failed.attributes["server.address"] == "127.0.0.1"
    assert answered.status.status_code == StatusCode.UNSET
    assert answered.attributes["switchyard.deployment"] == "second"
    assert answered.attributes["gen_ai.operation.name"] == "chat"
    assert answered.attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert failed.end_time <= answered.start_time
    assert all(c.end_time <= server.end_time for c in children)


async def test_a_client_traceparent_is_the_parent_and_reaches_the_upstream_on_every_attempt(pair) -> None:
    broken, good = pair
    exporter = InMemorySpanExporter()
    config = _config(broken, good, retries={"max_attempts_per_deployment": 2, "backoff_base_s": 0, "backoff_max_s": 0})
    async with app_client(config, span_processor=SimpleSpanProcessor(exporter)) as client:
        response = await client.post("/v1/chat/completions", json=CHAT, headers={"traceparent": TRACEPARENT})
    assert response.status_code == 200
    server, children = _tree(exporter.get_finished_spans())
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None
    assert format(server.parent.span_id, "016x") == PARENT_ID
    assert server.parent.is_remote
    attempts = [c for c in children if c.kind == SpanKind.CLIENT]
    assert len(attempts) == 3  # the first choice twice (a retry), then the fallback
    received = [r["headers"] for r in broken.records + good.records]
    assert len(received) == 3
    sent = [h.get("traceparent") or h.get("Traceparent") for h in received]
    assert sent == [f"00-{TRACE_ID}-{format(a.context.span_id, '016x')}-01" for a in attempts]
    assert len(set(sent)) == 3  # each attempt its own parent id


async def test_streamed_answers_keep_their_attempt_open_until_the_last_chunk(pair) -> None:
    broken, good = pair
    good.token_delay_s = 0.01
    exporter = InMemorySpanExporter()
    async with app_client(_config(broken, good), span_processor=SimpleSpanProcessor(exporter)) as client:
        oa = openai.AsyncOpenAI(api_key=MASTER_KEY, base_url="http://gateway/v1", http_client=client, max_retries=0)
        stream = await oa.chat.completions.create(
            model="auto", messages=CHAT["messages"], stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
    usage = chunks[-1].usage
    server, children = _tree(exporter.get_finished_spans())
    answered = next(c for c in children if c.name == "chat good-model")
    accounting = next(c for c in children if c.name == "accounting")
    assert answered.attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert answered.attributes["switchyard.ttft_ms"] > 0
    assert answered.end_time >= accounting.start_time  # it lasted as long as the stream
    assert (answered.end_time - answered.start_time) / 1e9 >= 0.01 * len(chunks[2:-2])
    assert server.attributes["switchyard.stream"] is True


async def test_refusals_are_traced_with_the_phase_that_refused(upstream: FakeUpstream) -> None:
    exporter = InMemorySpanExporter()
    config = make_config({"deployments": [fake_deployment("only", upstream.base_url)]})
    async with app_client(config, span_processor=SimpleSpanProcessor(exporter)) as client:
        response = await client.post(
            "/v1/chat/completions", json={**CHAT, "model": "only"}, headers={"authorization": "Bearer sk-wrong"}
        )
    assert response.status_code == 401
    server, children = _tree(exporter.get_finished_spans())
    assert [c.name for c in children] == ["auth"]
    assert children[0].status.status_code == StatusCode.ERROR
    assert children[0].attributes["error.type"] == "invalid_api_key"
    assert server.attributes["http.response.status_code"] == 401
    assert server.attributes["error.type"] == "invalid_api_key"
    assert server.status.status_code == StatusCode.UNSET  # a 4xx is the caller's, not the server's, error


async def test_every_failed_attempt_is_an_error_span_and_the_request_a_server_error(pair) -> None:
    broken, good = pair
    good.mode = "error-503"
    exporter = InMemorySpanExporter()
    async with app_client(_config(broken, good), span_processor=SimpleSpanProcessor(exporter)) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 503
    server, children = _tree(exporter.get_finished_spans())
    attempts = [c for c in children if c.kind == SpanKind.CLIENT]
    assert [a.status.status_code for a in attempts] == [StatusCode.ERROR, StatusCode.ERROR]
    assert server.status.status_code == StatusCode.ERROR
    assert server.attributes["error.type"] == "no_permitted_deployment"
    assert "switchyard.deployment" not in server.attributes


async def test_an_unreachable_collector_neither_slows_nor_fails_a_request(pair) -> None:
    """A collector that accepts connections and never answers: requests go on at full speed."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    broken, good = pair
    broken.mode = None
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(1)
    endpoint = f"http://127.0.0.1:{hole.getsockname()[1]}/v1/traces"
    processor = BatchSpanProcessor(
        OTLPSpanExporter(endpoint=endpoint, timeout=5), schedule_delay_millis=1, max_queue_size=8, max_export_batch_size=2
    )
    try:
        async with app_client(_config(broken, good), span_processor=processor) as client:
            await client.post("/v1/chat/completions", json=CHAT)  # warm
            started = time.perf_counter()
            responses = [await client.post("/v1/chat/completions", json=CHAT) for _ in range(40)]
            elapsed = time.perf_counter() - started
    finally:
        hole.close()
        await asyncio.to_thread(_export_threads_gone)  # its retries end within the exporter's timeout
    assert [r.status_code for r in responses] == [200] * 40
    assert elapsed < 10  # ~0.1 s of work; the exporter is stuck on each batch for 5 s


def _export_threads_gone(timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith("OtelBatch"):
            thread.join(max(0.0, deadline - time.monotonic()))


def test_tracing_off_imports_no_opentelemetry_and_serves(tmp_path: Path) -> None:
    """Off by default: the request path holds no tracer, and neither the tracing SDK nor an exporter
    is imported (FastAPI and redis-py import other OpenTelemetry packages for their own use)."""
    script = """
import asyncio, sys
import httpx
from tests.helpers import app_client, make_config, fake_deployment
from tests.fakes.openai_upstream import FakeUpstream

async def main():
    fake = FakeUpstream("x")
    await fake.start()
    config = make_config({"deployments": [fake_deployment("only", fake.base_url)]})
    async with app_client(config) as client:
        response = await client.post("/v1/chat/completions", json={"model": "only", "messages": [{"role": "user", "content": "hi"}]})
        state = client.app.state.gateway
        assert response.status_code == 200, response.text
        assert state.telemetry.tracing is None
    await fake.stop()
    loaded = sorted(m for m in sys.modules if m.startswith(("opentelemetry.sdk.trace", "opentelemetry.exporter", "gateway.telemetry_otel")))
    print("loaded:", loaded)
    assert not loaded, loaded

asyncio.run(main())
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_tracing_is_on_when_an_endpoint_is_configured() -> None:
    from gateway.telemetry import tracing_wanted

    base = {"deployments": [fake_deployment("only", "http://127.0.0.1:9/v1")]}
    off, on = make_config(base), make_config({**base, "telemetry": {"otlp_endpoint": "http://collector:4318"}})
    assert not tracing_wanted(off, {})
    assert tracing_wanted(on, {})
    assert tracing_wanted(off, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"})
    assert tracing_wanted(off, {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"})
    assert not tracing_wanted(on, {"OTEL_SDK_DISABLED": "true"})
    assert not tracing_wanted(on, {"OTEL_TRACES_EXPORTER": "none"})
    assert not tracing_wanted(make_config({**base, "telemetry": {"otlp_endpoint": "http://c:4318", "enabled": False}}), {})


async def test_litellm_deployments_carry_the_traceparent_too() -> None:
    from tests.providers.fake_anthropic import FakeAnthropic

    exporter = InMemorySpanExporter()
    async with FakeAnthropic() as fake:
        config = make_config(
            {
                "deployments": [
                    {
                        "name": "claude",
                        "provider": "litellm",
                        "model": "anthropic/claude-3-5-haiku-20241022",
                        "locality": "hosted",
                        "base_url": fake.base_url,
                        "api_key": "sk-ant-test",
                        "pricing": {"input_per_mtok": 1, "output_per_mtok": 5},
                    }
                ]
            }
        )
        async with app_client(config, span_processor=SimpleSpanProcessor(exporter)) as client:
            response = await client.post(
                "/v1/chat/completions", json={**CHAT, "model": "claude"}, headers={**AUTH, "traceparent": TRACEPARENT}
            )
        assert response.status_code == 200, response.text
        attempt = next(s for s in exporter.get_finished_spans() if s.kind == SpanKind.CLIENT)
        assert attempt.name == "chat claude-3-5-haiku-20241022"
        assert attempt.attributes["gen_ai.provider.name"] == "anthropic"
        headers = {k.lower(): v for k, v in fake.requests[-1].headers.items()}
        assert headers["traceparent"] == f"00-{TRACE_ID}-{format(attempt.context.span_id, '016x')}-01"


async def test_concurrent_requests_never_see_each_others_trace_context(pair) -> None:
    broken, good = pair
    broken.mode = None
    exporter = InMemorySpanExporter()
    async with app_client(_config(broken, good), span_processor=SimpleSpanProcessor(exporter)) as client:
        parents = [f"00-{i:032x}-{i:016x}-01" for i in range(1, 21)]
        await asyncio.gather(*(client.post("/v1/chat/completions", json=CHAT, headers={"traceparent": p}) for p in parents))
    received = sorted(r["headers"].get("traceparent") or r["headers"].get("Traceparent") for r in broken.records)
    assert [t.split("-")[1] for t in received] == [f"{i:032x}" for i in range(1, 21)]


async def test_an_unsampled_request_records_no_span_and_tells_the_upstream_so(pair) -> None:
    """The caller's trace is not sampled (flags 00): nothing is recorded, every attempt still
    carries the trace, marked not sampled, so the upstream does not record it either."""
    broken, good = pair
    exporter = InMemorySpanExporter()
    async with app_client(_config(broken, good), span_processor=SimpleSpanProcessor(exporter)) as client:
        response = await client.post("/v1/chat/completions", json=CHAT, headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-00"})
    assert response.status_code == 200
    assert exporter.get_finished_spans() == ()
    sent = [r["headers"].get("traceparent") or r["headers"].get("Traceparent") for r in broken.records + good.records]
    assert len(sent) == 2
    for header in sent:
        version, trace_id, parent_id, flags = header.split("-")
        assert (version, trace_id, flags) == ("00", TRACE_ID, "00")
        assert parent_id != PARENT_ID
