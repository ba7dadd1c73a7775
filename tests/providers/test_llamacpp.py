"""The embedded llama.cpp backend against the real bundled SmolLM2-135M model."""

from __future__ import annotations

import asyncio
import base64
import math
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio

from core.errors import InvalidRequest, UpstreamStatus
from providers.base import Provider
from providers.llamacpp import LlamaCppProvider, ProviderSetupError
from providers.settings import DeploymentConfig

pytestmark = pytest.mark.asyncio(loop_scope="module")

NO_EOS = {"2": -100}  # SmolLM2's <|im_end|> / eos id: forbid it to force long generations
QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def deployment(**overrides: Any) -> DeploymentConfig:
    fields: dict[str, Any] = {
        "name": "local-smollm2",
        "provider": "llamacpp",
        "model": "smollm2-135m-instruct",
        "locality": "self_hosted",
        "capabilities": ["chat", "completions", "embeddings"],
        "n_ctx": 2048,
    }
    fields.update(overrides)
    return DeploymentConfig(**fields)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provider() -> AsyncIterator[LlamaCppProvider]:
    p = LlamaCppProvider(deployment())
    await p.start()
    yield p
    await p.aclose()


def parse(chunk: bytes) -> dict[str, Any]:
    return orjson.loads(chunk)


def content_of(chunks: list[dict[str, Any]]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


async def test_chat_answers_in_openai_format_with_usage(provider: LlamaCppProvider) -> None:
    reply = await provider.chat({"messages": QUESTION, "max_tokens": 24})
    data = reply.data
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert data["model"] == "smollm2-135m-instruct"
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    usage = data["usage"]
    assert usage["prompt_tokens"] > 0 and usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert orjson.loads(reply.body) == data
    assert isinstance(provider, Provider)


async def test_stream_delivers_deltas_while_generating(provider: LlamaCppProvider) -> None:
    body = {"messages": QUESTION, "max_tokens": 64, "logit_bias": NO_EOS, "stream_options": {"include_usage": True}}
    stream = provider.chat_stream(body)
    chunks: list[dict[str, Any]] = []
    generated_at_first_content = None
    async for raw in stream:
        chunk = parse(raw)
        chunks.append(chunk)
        if generated_at_first_content is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            generated_at_first_content = stream.usage["completion_tokens"]  # type: ignore[attr-defined]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
    deltas = [c for c in chunks if c["choices"] and c["choices"][0]["delta"].get("content")]
    assert len(deltas) >= 5
    assert content_of(chunks).strip()
    final_usage = chunks[-1]["usage"]
    assert chunks[-1]["choices"] == [] and final_usage["completion_tokens"] == 64
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"
    # The first delta reached us long before the last token was generated: no buffering.
    assert generated_at_first_content is not None and generated_at_first_content < 48
    assert stream.usage == final_usage  # type: ignore[attr-defined]


async def test_closing_a_stream_stops_the_worker(provider: LlamaCppProvider) -> None:
    stream = provider.chat_stream({"messages": QUESTION, "max_tokens": 1500, "logit_bias": NO_EOS})
    for _ in range(4):
        await anext(stream)
    await stream.aclose()  # type: ignore[attr-defined]
    usage = stream.usage  # type: ignore[attr-defined]
    assert usage["prompt_tokens"] > 0 and 3 <= usage["completion_tokens"] < 100
    started = time.perf_counter()
    reply = await provider.chat({"messages": QUESTION, "max_tokens": 4})
    assert time.perf_counter() - started < 10  # 1500 tokens would take far longer
    assert reply.data["choices"][0]["message"]["content"]
    assert stream.usage == usage  # type: ignore[attr-defined]  # nothing generated after the cut


async def test_cancelled_request_frees_the_worker(provider: LlamaCppProvider) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(provider.chat({"messages": QUESTION, "max_tokens": 1500, "logit_bias": NO_EOS}), 0.5)
    started = time.perf_counter()
    await provider.chat({"messages": QUESTION, "max_tokens": 4})
    assert time.perf_counter() - started < 10


async def test_embeddings_one_pooled_vector_per_input(provider: LlamaCppProvider) -> None:
    texts = ["The cat sat on the mat.", "Quarterly revenue grew by four percent.", "The cat sat on the mat."]
    data = (await provider.embed({"input": texts})).data
    vectors = [item["embedding"] for item in data["data"]]
    assert [item["index"] for item in data["data"]] == [0, 1, 2]
    assert len(vectors) == 3 and len({len(v) for v in vectors}) == 1 and len(vectors[0]) > 100
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]
    assert math.isclose(math.sqrt(sum(x * x for x in vectors[0])), 1.0, rel_tol=1e-4)
    assert data["usage"]["prompt_tokens"] > 0
    # Same text in another request (and another batch) gives the same vector.
    again = (await provider.embed({"input": texts[0]})).data["data"][0]["embedding"]
    assert again == vectors[0]


async def test_embeddings_base64_and_dimensions(provider: LlamaCppProvider) -> None:
    floats = (await provider.embed({"input": "hello"})).data["data"][0]["embedding"]
    packed = (await provider.embed({"input": "hello", "encoding_format": "base64"})).data["data"][0]["embedding"]
    raw = base64.b64decode(packed)
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(decoded) == len(floats)
    assert all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7) for a, b in zip(decoded, floats, strict=True))
    short = (await provider.embed({"input": "hello", "dimensions": 64})).data["data"][0]["embedding"]
    assert len(short) == 64
    assert math.isclose(math.sqrt(sum(x * x for x in short)), 1.0, rel_tol=1e-4)


async def test_concurrent_requests_queue_without_blocking_the_loop(provider: LlamaCppProvider) -> None:
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    tick = asyncio.create_task(ticker())
    began = time.perf_counter()
    replies = await asyncio.gather(
        *(provider.chat({"messages": [{"role": "user", "content": f"Say a word about {n}."}], "max_tokens": 8}) for n in range(8))
    )
    per_reply = (time.perf_counter() - began) / len(replies)  # one worker: the replies run one after another
    stop.set()
    await tick
    assert all(r.data["choices"][0]["message"]["content"] is not None for r in replies)
    assert all(r.data["usage"]["completion_tokens"] > 0 for r in replies)
    assert len(gaps) > 20
    # A reply generated on the loop would hold it for a whole reply; what is left when it is not
    # is the scheduler's noise, which on a loaded 2-core machine reaches a tenth of a second
    # (and a reply takes longer then too).
    assert max(gaps) < max(0.05, per_reply / 2), (
        f"event loop stalled for {max(gaps) * 1000:.0f} ms (a reply: {per_reply * 1000:.0f} ms)"
    )


async def test_completions_string_and_list_prompts(provider: LlamaCppProvider) -> None:
    data = (await provider.complete({"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0})).data
    assert data["object"] == "text_completion" and data["id"].startswith("cmpl-")
    assert data["choices"][0]["text"]
    assert data["usage"]["prompt_tokens"] > 0 and data["usage"]["completion_tokens"] > 0
    many = (await provider.complete({"prompt": ["One, two,", "Red, green,"], "max_tokens": 3, "n": 2})).data
    assert [c["index"] for c in many["choices"]] == [0, 1, 2, 3]
    chunks = [
        parse(c)
        async for c in provider.complete_stream(
            {"prompt": "1, 2, 3,", "max_tokens": 6, "stream_options": {"include_usage": True}}
        )
    ]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
    assert chunks[-1]["usage"]["completion_tokens"] > 0


async def test_chat_options_pass_through(provider: LlamaCppProvider) -> None:
    body = {"messages": QUESTION, "max_tokens": 5, "n": 2, "seed": 7, "logprobs": True, "top_logprobs": 2}
    data = (await provider.chat(body)).data
    assert [c["index"] for c in data["choices"]] == [0, 1]
    entry = data["choices"][0]["logprobs"]["content"][0]
    assert entry["logprob"] <= 0 and len(entry["top_logprobs"]) == 2
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    fmt = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    answer = (await provider.chat({"messages": QUESTION, "max_tokens": 40, "response_format": fmt})).data
    assert "city" in orjson.loads(answer["choices"][0]["message"]["content"])
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": schema}}
    called = (await provider.chat({"messages": QUESTION, "max_tokens": 40, "tools": [tool], "tool_choice": "required"})).data
    call = called["choices"][0]["message"]["tool_calls"][0]
    assert called["choices"][0]["finish_reason"] == "tool_calls"
    assert call["function"]["name"] == "get_weather" and "city" in orjson.loads(call["function"]["arguments"])
    streamed = [
        parse(c)
        async for c in provider.chat_stream({"messages": QUESTION, "max_tokens": 40, "tools": [tool], "tool_choice": "required"})
    ]
    deltas = [d for c in streamed for d in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [d["function"].get("name") for d in deltas if d["function"].get("name")] == ["get_weather"]  # named once
    assert "city" in orjson.loads("".join(d["function"]["arguments"] for d in deltas))


async def test_bad_input_is_a_400(provider: LlamaCppProvider) -> None:
    image = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "data:,"}}]}]
    with pytest.raises(InvalidRequest):
        await provider.chat({"messages": image})
    with pytest.raises(InvalidRequest):
        await provider.chat({"messages": QUESTION, "n": 99})
    with pytest.raises(InvalidRequest):
        await anext(provider.chat_stream({"messages": []}))
    with pytest.raises(InvalidRequest):
        await provider.embed({"input": [10**9, 2, 3]})  # token ids no OpenAI vocabulary has


async def test_full_queue_is_overloaded_and_long_prompts_are_context_errors() -> None:
    small = LlamaCppProvider(deployment(name="tiny-queue", n_ctx=512, max_queue=1))  # loads lazily
    try:
        assert await small.health()
        running = small.chat_stream({"messages": QUESTION, "max_tokens": 400, "logit_bias": NO_EOS})
        await anext(running)  # the only worker is busy now
        waiting = asyncio.create_task(small.chat({"messages": QUESTION, "max_tokens": 2}))
        await asyncio.sleep(0)
        with pytest.raises(UpstreamStatus) as overloaded:
            await small.chat({"messages": QUESTION, "max_tokens": 2})
        assert overloaded.value.upstream_status == 429 and overloaded.value.status == 429
        assert overloaded.value.retryable
        await running.aclose()  # type: ignore[attr-defined]
        assert (await waiting).data["choices"]
        assert small.n_ctx == 512
        with pytest.raises(UpstreamStatus) as too_long:
            await small.chat({"messages": [{"role": "user", "content": "word " * 700}]})
        assert too_long.value.is_context_length and too_long.value.retryable
    finally:
        await small.aclose()


async def test_models_and_missing_file() -> None:
    assert await LlamaCppProvider(deployment()).models() == ["smollm2-135m-instruct"]
    with pytest.raises(ProviderSetupError, match=r"/nonexistent/model\.gguf"):
        LlamaCppProvider(deployment(model="/nonexistent/model.gguf"))
