"""Every response shape the gateway emits, checked against OpenAI's published schemas.

Two backends behind one in-process gateway: the embedded llama.cpp model (``local``) and an
``openai_compatible`` upstream (the fake in tests/fakes, ``fake``). Each case goes over the wire
as a client sends it (JSON or SSE), and every object that comes back (each stream chunk, each
error event) is validated against its vendored component schema. Where OpenAI's own API departs
from its spec, ``tests.conformance.spec.SPEC_DEVIATIONS`` says so, once, by name.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from tests.conformance.spec import assert_conforms
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import app_client, fake_deployment, make_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}
NAMED = {"type": "function", "function": {"name": "get_weather"}}
CITY = {"type": "json_schema", "json_schema": {"name": "answer", "schema": WEATHER["function"]["parameters"]}}


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fake() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream("fake")
    await upstream.start()
    yield upstream
    await upstream.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def gateway(fake: FakeUpstream) -> AsyncIterator[httpx.AsyncClient]:
    local = {
        "name": "local",
        "provider": "llamacpp",
        "model": "smollm2-135m-instruct",
        "locality": "self_hosted",
        "n_ctx": 2048,
        "capabilities": ["chat", "completions", "embeddings", "tools", "json_schema"],
    }
    config = make_config(
        {
            "deployments": [local, fake_deployment("fake", fake.base_url, model="fake-model")],
            "routes": [{"name": "auto", "candidates": ["local", "fake"]}],
            "retries": {"max_attempts_per_deployment": 1},
        }
    )
    async with app_client(config) as client:
        yield client


async def post_json(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    response = await client.post(path, json=body, timeout=120)
    return response.status_code, response.json()


async def post_stream(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> list[Any]:
    """Every SSE event's JSON, in order; asserts the stream ends with ``[DONE]`` or an error event."""
    events: list[Any] = []
    done = False
    async with client.stream("POST", path, json={**body, "stream": True}, timeout=120) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            payload = line.removeprefix("data: ")
            if payload == "[DONE]":
                done = True
                continue
            assert not done, "an event after [DONE]"
            events.append(orjson.loads(payload))
    assert events, "an empty stream"
    assert done or "error" in events[-1], "the stream ended without [DONE]"
    return events


# ---------------------------------------------------------------- chat

CHAT_CASES: dict[str, dict[str, Any]] = {
    "plain": {"messages": QUESTION, "max_tokens": 12},
    "n-and-logprobs": {"messages": QUESTION, "max_tokens": 4, "n": 2, "logprobs": True, "top_logprobs": 2, "seed": 3},
    "json-schema": {"messages": QUESTION, "max_tokens": 40, "response_format": CITY},
    "named-tool": {"messages": QUESTION, "max_tokens": 40, "tools": [WEATHER], "tool_choice": NAMED},
    "required-of-two": {"messages": QUESTION, "max_tokens": 60, "tools": [WEATHER, TIME], "tool_choice": "required"},
    "tool-cut-short": {"messages": QUESTION, "max_tokens": 3, "tools": [WEATHER], "tool_choice": NAMED},
}
FAKE_CHAT_CASES = ("plain",)


def chat_cases() -> list[tuple[str, str]]:
    return [("local", case) for case in CHAT_CASES] + [("fake", case) for case in FAKE_CHAT_CASES]


@pytest.mark.parametrize(("model", "case"), chat_cases())
async def test_chat_completion_conforms(gateway: httpx.AsyncClient, model: str, case: str) -> None:
    status, data = await post_json(gateway, "/v1/chat/completions", {"model": model, **CHAT_CASES[case]})
    assert status == 200, data
    assert_conforms("CreateChatCompletionResponse", data)


@pytest.mark.parametrize(("model", "case"), chat_cases())
@pytest.mark.parametrize("usage", [False, True], ids=["no-usage", "include-usage"])
async def test_chat_stream_chunks_conform(gateway: httpx.AsyncClient, model: str, case: str, usage: bool) -> None:
    body: dict[str, Any] = {"model": model, **CHAT_CASES[case]}
    if usage:
        body["stream_options"] = {"include_usage": True}
    events = await post_stream(gateway, "/v1/chat/completions", body)
    for event in events:
        assert_conforms("CreateChatCompletionStreamResponse", event)
    finishes = [c["finish_reason"] for e in events for c in e["choices"] if c.get("finish_reason")]
    assert finishes, "no chunk said why the stream ended"
    if usage:
        assert events[-1]["choices"] == [] and events[-1]["usage"]["total_tokens"] > 0
    else:  # what the client did not ask for is not there, not even as null
        assert all("usage" not in e for e in events)


# ---------------------------------------------------------------- completions

COMPLETION_CASES: dict[str, dict[str, Any]] = {
    "plain": {"prompt": "The capital of France is", "max_tokens": 6},
    "two-prompts-n2": {"prompt": ["One, two,", "Red, green,"], "max_tokens": 3, "n": 2},
    "echo-logprobs": {"prompt": "1, 2, 3,", "max_tokens": 4, "echo": True, "logprobs": 2},
}
FAKE_COMPLETION_CASES = ("plain",)


def completion_cases() -> list[tuple[str, str]]:
    return [("local", case) for case in COMPLETION_CASES] + [("fake", case) for case in FAKE_COMPLETION_CASES]


@pytest.mark.parametrize(("model", "case"), completion_cases())
async def test_completion_conforms(gateway: httpx.AsyncClient, model: str, case: str) -> None:
    status, data = await post_json(gateway, "/v1/completions", {"model": model, **COMPLETION_CASES[case]})
    assert status == 200, data
    assert_conforms("CreateCompletionResponse", data)


@pytest.mark.parametrize(("model", "case"), completion_cases())
@pytest.mark.parametrize("usage", [False, True], ids=["no-usage", "include-usage"])
async def test_completion_stream_chunks_conform(gateway: httpx.AsyncClient, model: str, case: str, usage: bool) -> None:
    body: dict[str, Any] = {"model": model, **COMPLETION_CASES[case]}
    if usage:
        body["stream_options"] = {"include_usage": True}
    events = await post_stream(gateway, "/v1/completions", body)
    for event in events:
        assert_conforms("CreateCompletionResponse", event)
    if usage:
        assert events[-1]["choices"] == [] and events[-1]["usage"]["total_tokens"] > 0


# ---------------------------------------------------------------- embeddings

EMBEDDING_CASES: dict[str, dict[str, Any]] = {
    "one-string": {"input": "The cat sat on the mat."},
    "strings-base64": {"input": ["The cat sat.", "A dog ran."], "encoding_format": "base64"},
    "token-arrays": {"input": [[791, 8415, 7731, 389, 279, 5634, 13]]},  # cl100k ids, as LangChain sends
}


@pytest.mark.parametrize("model", ["local", "fake"])
@pytest.mark.parametrize("case", list(EMBEDDING_CASES))
async def test_embeddings_conform(gateway: httpx.AsyncClient, model: str, case: str) -> None:
    status, data = await post_json(gateway, "/v1/embeddings", {"model": model, **EMBEDDING_CASES[case]})
    assert status == 200, data
    assert_conforms("CreateEmbeddingResponse", data)
    inputs = EMBEDDING_CASES[case]["input"]
    assert len(data["data"]) == (1 if isinstance(inputs, str) else len(inputs))


# ---------------------------------------------------------------- models and errors


async def test_model_list_and_model_conform(gateway: httpx.AsyncClient) -> None:
    listing = (await gateway.get("/v1/models")).json()
    assert_conforms("ListModelsResponse", listing)
    assert {m["id"] for m in listing["data"]} >= {"auto", "local", "fake"}
    assert_conforms("Model", (await gateway.get("/v1/models/local")).json())


ERROR_CASES: dict[str, tuple[str, dict[str, Any], int]] = {
    "unknown-model": ("/v1/chat/completions", {"model": "no-such-model", "messages": QUESTION}, 404),
    "bad-param-local": ("/v1/chat/completions", {"model": "local", "messages": QUESTION, "n": 99}, 400),
    "upstream-500": ("/v1/chat/completions", {"model": "fake", "messages": QUESTION, "max_tokens": 2}, 502),
    "empty-input": ("/v1/embeddings", {"model": "local", "input": ""}, 400),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
async def test_errors_conform(gateway: httpx.AsyncClient, fake: FakeUpstream, case: str) -> None:
    path, body, status = ERROR_CASES[case]
    fake.mode = "error-500" if case == "upstream-500" else None
    try:
        got, data = await post_json(gateway, path, body)
    finally:
        fake.mode = None
    assert got == status, data
    assert_conforms("ErrorResponse", data)


async def test_error_event_mid_stream_conforms(gateway: httpx.AsyncClient, fake: FakeUpstream) -> None:
    fake.mode = "cut-stream"
    try:
        events = await post_stream(gateway, "/v1/chat/completions", {"model": "fake", "messages": QUESTION})
    finally:
        fake.mode = None
    assert "error" in events[-1]
    assert_conforms("ErrorResponse", events[-1])
    for event in events[:-1]:
        assert_conforms("CreateChatCompletionStreamResponse", event)
