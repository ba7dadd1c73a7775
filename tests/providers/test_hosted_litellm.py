"""The litellm adapter against a local fake of Anthropic's Messages API."""

from __future__ import annotations

import base64
import struct
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio

from core.errors import UpstreamConnectionError, UpstreamStatus, UpstreamTimeout
from providers.base import Provider
from providers.hosted_litellm import LiteLLMProvider
from providers.settings import DeploymentConfig
from tests.helpers import free_port
from tests.providers.fake_anthropic import INPUT_TOKENS, REPLY_TEXT, FakeAnthropic

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    # pytest resets warning filters per test; the adapter silences this one in production.
    pytest.mark.filterwarnings("ignore:Item .* on TypedDict class:UserWarning"),
]

MESSAGES = [{"role": "system", "content": "Answer in one sentence."}, {"role": "user", "content": "Capital of France?"}]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fake() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


def claude(base_url: str, model: str = "anthropic/claude-3-5-haiku-20241022", **overrides: Any) -> LiteLLMProvider:
    fields: dict[str, Any] = {
        "name": "claude-haiku",
        "provider": "litellm",
        "model": model,
        "locality": "hosted",
        "base_url": base_url,
        "api_key": "sk-ant-test",
    }
    fields.update(overrides)
    return LiteLLMProvider(DeploymentConfig(**fields))


async def test_chat_returns_openai_format_and_sends_anthropic_format(fake: FakeAnthropic) -> None:
    provider = claude(fake.base_url)
    assert isinstance(provider, Provider) and provider.name == "claude-haiku"
    reply = await provider.chat({"model": "auto", "messages": MESSAGES, "metadata": {"x-switchyard-task": "chat"}})
    data = orjson.loads(reply.body)
    assert data == reply.data
    assert data["object"] == "chat.completion"
    assert data["choices"][0]["message"] == {"role": "assistant", "content": REPLY_TEXT}
    assert data["choices"][0]["finish_reason"] == "stop"
    assert data["usage"]["prompt_tokens"] == INPUT_TOKENS
    assert data["usage"]["completion_tokens"] > 0
    assert data["usage"]["total_tokens"] == data["usage"]["prompt_tokens"] + data["usage"]["completion_tokens"]
    assert "provider_specific_fields" not in reply.body.decode()

    sent = fake.requests[-1]
    assert sent.path == "/v1/messages"
    assert sent.headers["x-api-key"] == "sk-ant-test" and "anthropic-version" in sent.headers
    assert sent.body["model"] == "claude-3-5-haiku-20241022"
    assert "Answer in one sentence." in orjson.dumps(sent.body["system"]).decode()
    assert all(m["role"] != "system" for m in sent.body["messages"])
    assert isinstance(sent.body["max_tokens"], int) and sent.body["max_tokens"] > 0
    assert "metadata" not in sent.body  # the gateway's hints stay in the gateway


async def test_max_tokens_reaches_anthropic(fake: FakeAnthropic) -> None:
    await claude(fake.base_url).chat({"messages": MESSAGES, "max_tokens": 77})
    assert fake.requests[-1].body["max_tokens"] == 77


async def test_stream_yields_openai_chunks_and_a_usage_chunk(fake: FakeAnthropic) -> None:
    stream = claude(fake.base_url).chat_stream({"messages": MESSAGES, "stream_options": {"include_usage": True}})
    chunks = [orjson.loads(raw) async for raw in stream]
    assert fake.requests[-1].body["stream"] is True
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == REPLY_TEXT
    assert len([c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]) > 3
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finish == ["stop"]
    last = chunks[-1]
    assert last["choices"] == [] and last["usage"]["prompt_tokens"] == INPUT_TOKENS
    assert last["usage"]["completion_tokens"] > 0
    assert all(c["usage"] is None for c in chunks[:-1])  # OpenAI's include_usage shape
    for chunk in chunks:
        for choice in chunk["choices"]:
            assert None not in choice["delta"].values()
    assert stream.usage == last["usage"]  # type: ignore[attr-defined]


async def test_stream_without_include_usage_keeps_usage_for_the_ledger(fake: FakeAnthropic) -> None:
    stream = claude(fake.base_url).chat_stream({"messages": MESSAGES})
    chunks = [orjson.loads(raw) async for raw in stream]
    assert all("usage" not in c and c["choices"] for c in chunks)
    assert stream.usage["prompt_tokens"] == INPUT_TOKENS  # type: ignore[attr-defined]


async def test_text_completions(fake: FakeAnthropic) -> None:
    provider = claude(fake.base_url)
    data = (await provider.complete({"prompt": "Capital of France?", "max_tokens": 20})).data
    assert data["object"] == "text_completion"
    assert data["choices"][0]["text"] == REPLY_TEXT and data["usage"]["prompt_tokens"] == INPUT_TOKENS
    body = {"prompt": "Capital of France?", "max_tokens": 20, "stream_options": {"include_usage": True}}
    chunks = [orjson.loads(raw) async for raw in provider.complete_stream(body)]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == REPLY_TEXT
    assert chunks[-1]["usage"]["completion_tokens"] > 0


@pytest.mark.parametrize(
    ("model", "upstream", "status", "retryable"),
    [
        ("error-429", 429, 429, True),
        ("error-500", 500, 502, True),
        ("error-overloaded", 529, 502, True),
        ("error-400", 400, 400, False),
        ("error-401", 401, 502, True),  # the gateway's own key is wrong: another deployment may serve
    ],
)
async def test_errors_map_to_upstream_status(
    fake: FakeAnthropic, model: str, upstream: int, status: int, retryable: bool
) -> None:
    provider = claude(fake.base_url, model=f"anthropic/{model}")
    with pytest.raises(UpstreamStatus) as caught:
        await provider.chat({"messages": MESSAGES})
    error = caught.value
    assert (error.upstream_status, error.status, error.retryable) == (upstream, status, retryable)
    assert error.deployment == "claude-haiku"
    if upstream == 429:
        assert error.retry_after == 3 and error.headers["retry-after"] == "3"
    # Streams fail on the first __anext__, before any chunk, so the gateway can still fall back.
    with pytest.raises(UpstreamStatus) as streamed:
        await anext(provider.chat_stream({"messages": MESSAGES}))
    assert streamed.value.upstream_status == upstream


async def test_connection_refused_is_a_connection_error() -> None:
    provider = claude(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UpstreamConnectionError):
        await provider.chat({"messages": MESSAGES})
    with pytest.raises(UpstreamConnectionError):
        await anext(provider.chat_stream({"messages": MESSAGES}))


async def test_slow_upstream_is_a_timeout(fake: FakeAnthropic) -> None:
    provider = claude(fake.base_url, model="anthropic/slow-1", timeouts={"first_byte": 0.3, "read": 0.3})
    with pytest.raises(UpstreamTimeout):
        await provider.chat({"messages": MESSAGES})


async def test_embeddings_float_and_base64() -> None:
    from tests.fakes.openai_upstream import FakeUpstream

    upstream = FakeUpstream("embedder")
    base_url = await upstream.start()
    try:
        provider = claude(base_url, model="openai/text-embedding-3-small", name="embedder")
        floats = (await provider.embed({"input": ["alpha", "beta", "alpha"]})).data
        vectors = [item["embedding"] for item in floats["data"]]
        assert len(vectors) == 3 and vectors[0] == vectors[2] != vectors[1]
        assert floats["usage"]["prompt_tokens"] > 0
        packed = (await provider.embed({"input": "alpha", "encoding_format": "base64"})).data["data"][0]["embedding"]
        raw = base64.b64decode(packed)
        assert struct.unpack(f"<{len(raw) // 4}f", raw) == pytest.approx(vectors[0], rel=1e-6)
    finally:
        await upstream.stop()
