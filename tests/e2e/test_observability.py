"""A real ``switchyard serve`` process exporting traces to a real OTLP/HTTP receiver, logging at
debug level in JSON with bodies included: spans arrive, every line is JSON, and neither a planted
card number nor a planted API key (nor any key the gateway holds) appears anywhere it writes."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import openai
import pytest
import pytest_asyncio

from tests.fakes.openai_upstream import FakeUpstream
from tests.fakes.otlp_receiver import OTLPReceiver, ReceivedSpan
from tests.helpers import (
    MASTER_KEY,
    GatewayProcess,
    fake_deployment,
    start_gateways,
    write_config,
)

pytestmark = [pytest.mark.slow]

CARD = "4111 1111 1111 1111"
PLANTED_KEY = "sk-proj-" + "Zq7" + secrets.token_hex(20)  # a real-looking OpenAI key, new every run
BACKEND_KEY = "sk-backend-" + secrets.token_hex(16)
MARKER = "Marmalade"  # plain words of the prompt: in a masked body log line, never in a span
PROMPT = f"{MARKER} order: charge card {CARD} and call the API with {PLANTED_KEY} please."
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"


@dataclass
class Rig:
    gateway: GatewayProcess
    receiver: OTLPReceiver
    upstream: FakeUpstream

    @property
    def url(self) -> str:
        return self.gateway.base_url


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def rig(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Rig]:
    directory = tmp_path_factory.mktemp("observability")
    upstream, receiver = FakeUpstream("good"), OTLPReceiver()
    await upstream.start()
    await receiver.start()
    prices = {"input_per_mtok": 1, "output_per_mtok": 2}
    config = write_config(
        directory,
        {
            "database_url": f"sqlite:///{directory}/ledger.db",
            "ledger": {"spool_dir": str(directory / "spool"), "flush_interval_ms": 20},
            "logging": {"format": "json", "level": "debug", "include_bodies": True},
            "deployments": [
                fake_deployment("first", upstream.base_url, model="echo-500", api_key=BACKEND_KEY, pricing=prices),
                fake_deployment("second", upstream.base_url, model="good", api_key=BACKEND_KEY, pricing=prices),
            ],
            "routes": [{"name": "auto", "candidates": ["first", "second"]}],
            "projects": [{"name": "obs", "budget": {"usd": 10}}],
            "retries": {"max_attempts_per_deployment": 1},
        },
    )
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_SERVICE_NAME": "switchyard-e2e",
    }
    gateway = GatewayProcess(config, env=env, log_level="debug", extra_args=("--access-log",))
    await start_gateways(gateway)
    try:
        yield Rig(gateway, receiver, upstream)
    finally:
        gateway.stop()
        await receiver.stop()
        await upstream.stop()


async def _spans_of(receiver: OTLPReceiver, trace_id: str, count: int, timeout: float = 15.0) -> list[ReceivedSpan]:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        spans = receiver.trace(trace_id)
        if len(spans) >= count:
            return spans
        await asyncio.sleep(0.05)
    raise AssertionError(f"only {len(receiver.trace(trace_id))} of {count} spans of {trace_id} arrived")


async def test_spans_reach_a_real_otlp_receiver(rig: Rig) -> None:
    async with httpx.AsyncClient(base_url=rig.url, headers={"authorization": f"Bearer {MASTER_KEY}"}, timeout=30) as client:
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": "hello"}]},
            headers={"traceparent": f"00-{TRACE_ID}-{PARENT_ID}-01"},
        )
    assert response.status_code == 200, response.text
    spans = await _spans_of(rig.receiver, TRACE_ID, 7)
    (server,) = [s for s in spans if s.parent_span_id == PARENT_ID]
    assert server.name == "POST /v1/chat/completions"
    assert server.kind == 2
    assert server.resource["service.name"] == "switchyard-e2e"
    assert server.attributes["switchyard.deployment"] == "second"
    assert server.attributes["switchyard.fallbacks"] == 1
    assert server.attributes["gen_ai.usage.output_tokens"] == response.json()["usage"]["completion_tokens"]
    children = sorted((s for s in spans if s.parent_span_id == server.span_id), key=lambda s: s.start_ns)
    assert [c.name for c in children] == ["auth", "routing", "admission", "chat echo-500", "chat good", "accounting"]
    failed = children[3]
    assert failed.status_code == 2
    assert "HTTP 500" in failed.status_message
    assert failed.kind == 3  # SPAN_KIND_CLIENT
    received = [r["headers"].get("Traceparent") or r["headers"].get("traceparent") for r in rig.upstream.records[-2:]]
    assert received == [f"00-{TRACE_ID}-{c.span_id}-01" for c in children[3:5]]


async def test_no_secret_appears_in_any_log_line_or_span(rig: Rig) -> None:
    async with httpx.AsyncClient(base_url=rig.url, timeout=30) as admin:
        created = await admin.post(
            "/admin/keys", json={"project": "obs", "name": "planted"}, headers={"authorization": f"Bearer {MASTER_KEY}"}
        )
        assert created.status_code == 201, created.text
        virtual_key, key_id = created.json()["key"], created.json()["id"]
        auth = {"authorization": f"Bearer {virtual_key}"}
        messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": PROMPT}]
        sdk = openai.AsyncOpenAI(api_key=virtual_key, base_url=rig.url + "/v1", max_retries=0)
        chat = await sdk.chat.completions.create(model="auto", messages=messages)
        stream = await sdk.chat.completions.create(
            model="auto", messages=messages, stream=True, stream_options={"include_usage": True}
        )
        streamed = [chunk async for chunk in stream]
        embedded = await sdk.embeddings.create(model="second", input=[PROMPT, "second input"])
        completed = await sdk.completions.create(model="second", prompt=PROMPT)
        refusals = [
            await admin.post("/v1/chat/completions", headers=auth, json={"model": "auto", "messages": [{"content": PROMPT}]}),
            await admin.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {PLANTED_KEY}"},
                json={"model": "auto", "messages": messages},
            ),
            await admin.post("/v1/chat/completions", headers=auth, content=b'{"model": "auto", "messages": "' + PROMPT.encode()),
            await admin.post("/v1/chat/completions", headers=auth, json={"model": PROMPT, "messages": messages}),
            await admin.post("/v1/embeddings", headers=auth, json={"model": "second", "input": {"text": PROMPT}}),
            await admin.get(f"/v1/models/{PLANTED_KEY}", headers=auth),
        ]
    assert chat.choices[0].message.content
    assert streamed[-1].usage is not None
    assert len(embedded.data) == 2
    assert completed.choices[0].text
    assert [r.status_code for r in refusals] == [400, 401, 400, 404, 400, 404]
    answered = 4

    await asyncio.sleep(0.5)  # the last spans leave in the next batch (every 50 ms)
    await asyncio.to_thread(rig.gateway.stop)  # SIGTERM: flushes the ledger and the span queue
    output = rig.gateway.logs()
    wire = b"".join(rig.receiver.raw)
    span_text = json.dumps([[s.name, s.attributes, s.status_message, s.events, s.resource] for s in rig.receiver.spans])

    planted = {
        "card": CARD,
        "card digits": CARD.replace(" ", ""),
        "planted key": PLANTED_KEY,
        "virtual key": virtual_key,
        "backend key": BACKEND_KEY,
        "master key": MASTER_KEY,
        "key body": PLANTED_KEY[8:],
    }
    for name, value in planted.items():
        assert value not in output, f"the {name} is in the process output"
        assert value.encode() not in wire, f"the {name} is in the exported spans"
        assert value not in span_text, f"the {name} is in a span"
    assert MARKER not in span_text
    assert MARKER.encode() not in wire

    lines = [json.loads(line) for line in output.splitlines() if line.strip()]
    assert all(isinstance(line, dict) and {"time", "level", "logger", "msg"} <= line.keys() for line in lines)
    assert any(line["level"] == "debug" for line in lines)  # debug level really was on
    requests = [line for line in lines if line["logger"] == "switchyard.requests"]
    mine = [line for line in requests if line.get("key_id") == key_id]
    assert len(mine) == answered + 4  # the model routes' requests but the planted key's 401 (no key id)
    (models,) = [line for line in requests if line["path"].startswith("/v1/models/")]
    assert models["status"] == 404
    assert models["path"] == "/v1/models/sk-***"
    assert any(line["path"] == "/admin/keys" and line["status"] == 201 for line in requests)
    masked = [line for line in mine if line.get("request_body")]
    assert masked
    assert all("[credit_card]" in json.dumps(line["request_body"]) for line in masked if line["status"] == 200)
    assert any(MARKER in json.dumps(line["request_body"]) for line in masked)  # bodies are logged, masked
    assert any(line["logger"] == "uvicorn.access" for line in lines)  # --access-log: JSON like the rest
    by_status = sorted(line["status"] for line in mine)
    assert by_status == sorted([200] * answered + [400, 400, 404, 400])
