"""Anthropic's Messages API on the gateway, with the official ``anthropic`` SDK as the client:
answers and streams in Anthropic's shapes, the request translated faithfully for the backend,
the same routing headers and ledger rows as a chat completion, and every refusal in Anthropic's
error shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import httpx2
import orjson
import pytest
from sqlmodel import select

from gateway.db.models import UsageRecord
from tests.fakes.openai_upstream import FakeUpstream
from tests.fakes.wire_fixtures import ANSWER, COMPLETION_TOKENS, PROMPT_TOKENS, TOOL_ARGS, TOOL_NAME
from tests.fakes.wire_upstream import WireUpstream
from tests.helpers import MASTER_KEY, app_client, make_config

TOOLS = [
    {
        "name": TOOL_NAME,
        "description": "Weather in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


@pytest.fixture(scope="module")
async def wire() -> AsyncIterator[WireUpstream]:
    server = await WireUpstream().start()
    yield server
    await server.stop()


def _deployment(name: str, wire: WireUpstream, scenario: str = "answer", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "vllm",
        "model": "served-model",
        "base_url": wire.url("vllm", "/v1"),
        "locality": "self_hosted",
        "capabilities": ["chat", "tools", "vision"],
        "headers": {"x-fake-scenario": scenario},
        "timeouts": {"connect": 1, "first_byte": 5, "read": 5},
        **extra,
    }


@pytest.fixture(scope="module")
async def gateway(wire: WireUpstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx.AsyncClient]:
    tmp = tmp_path_factory.mktemp("messages")
    config = make_config(
        {
            "database_url": f"sqlite:///{tmp}/ledger.db",
            "ledger": {"flush_interval_ms": 10, "spool_dir": str(tmp / "spool")},
            "retries": {"max_attempts_per_deployment": 1},
            "deployments": [
                _deployment("local", wire),
                _deployment("local-tool", wire, "tool"),
                _deployment("local-context", wire, "context"),
                _deployment("local-ratelimit", wire, "ratelimit"),
                _deployment("local-nousage", wire, "nousage"),
                {**_deployment("pretrained", wire), "kind": "base", "capabilities": ["chat", "completions"]},
            ],
            "routes": [{"name": "auto", "candidates": ["local"]}, {"name": "base-only", "candidates": ["pretrained"]}],
            "projects": [{"name": "default", "limits": {"rpm": 1000}}],
        }
    )
    async with app_client(config) as client:
        yield client


@pytest.fixture
def sdk(gateway: httpx.AsyncClient) -> anthropic.AsyncAnthropic:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=gateway.app), timeout=30)  # type: ignore[attr-defined]
    return anthropic.AsyncAnthropic(api_key=MASTER_KEY, base_url="http://gateway", http_client=http, max_retries=0)


def _sent(wire: WireUpstream) -> dict[str, Any]:
    return wire.received("vllm")[-1].body


async def test_create_answers_a_message(sdk: anthropic.AsyncAnthropic, wire: WireUpstream) -> None:
    raw = await sdk.messages.with_raw_response.create(
        model="auto",
        max_tokens=100,
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        messages=[{"role": "user", "content": "Capital of France?"}],
        stop_sequences=["\n\n"],
        extra_body={"temperature": 0.2},
        metadata={"user_id": "u-42"},
    )
    message = await raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert [b.type for b in message.content] == ["text"] and message.content[0].text == ANSWER
    assert message.stop_reason == "end_turn"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert raw.headers["x-switchyard-deployment"] == "local" and raw.headers["x-switchyard-route"] == "auto"
    sent = _sent(wire)
    assert sent["messages"][0] == {"role": "system", "content": "Be brief.\n\nBe kind."}
    assert sent["messages"][1] == {"role": "user", "content": "Capital of France?"}
    assert (sent["stop"], sent["max_tokens"], sent["temperature"], sent["user"]) == (["\n\n"], 100, 0.2, "u-42")


async def test_stream_follows_anthropics_event_sequence(gateway: httpx.AsyncClient) -> None:
    body = {"model": "auto", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "hi"}]}
    async with gateway.stream("POST", "/v1/messages", json=body, headers={"anthropic-version": "2023-06-01"}) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        raw = b"".join([chunk async for chunk in response.aiter_bytes()])
    events = [
        (e.split("\n")[0].removeprefix("event: "), json.loads(e.split("\n")[1].removeprefix("data: ")))
        for e in raw.decode().strip().split("\n\n")
    ]
    names = [name for name, _ in events]
    assert names[:4] == ["message_start", "content_block_start", "ping", "content_block_delta"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(name == data["type"] for name, data in events)
    assert "".join(d["delta"]["text"] for n, d in events if n == "content_block_delta") == ANSWER
    final = dict(events)["message_delta"]
    assert final["delta"]["stop_reason"] == "end_turn"
    assert final["usage"] == {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS}


async def test_sdk_stream_accumulates_the_message(sdk: anthropic.AsyncAnthropic) -> None:
    async with sdk.messages.stream(model="auto", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == ANSWER and final.content[0].text == ANSWER
    assert final.usage.output_tokens == COMPLETION_TOKENS and final.usage.input_tokens == PROMPT_TOKENS


async def test_stream_without_backend_usage_still_ends_with_usage(sdk: anthropic.AsyncAnthropic) -> None:
    async with sdk.messages.stream(model="local-nousage", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as s:
        final = await s.get_final_message()
    assert final.content[0].text == ANSWER and final.usage.output_tokens == len(ANSWER.split(" ")) + 1


async def test_tool_use_and_tool_result_round_trip(sdk: anthropic.AsyncAnthropic, wire: WireUpstream) -> None:
    first = await sdk.messages.create(
        model="local-tool",
        max_tokens=100,
        tools=TOOLS,
        tool_choice={"type": "tool", "name": TOOL_NAME, "disable_parallel_tool_use": True},
        messages=[{"role": "user", "content": "Weather in Paris?"}],
    )
    assert first.stop_reason == "tool_use"
    use = first.content[0]
    assert use.type == "tool_use" and use.name == TOOL_NAME and use.input == json.loads(TOOL_ARGS)
    sent = _sent(wire)
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {"name": TOOL_NAME, "parameters": TOOLS[0]["input_schema"], "description": "Weather in a city"},
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": TOOL_NAME}}
    assert sent["parallel_tool_calls"] is False
    await sdk.messages.create(
        model="auto",
        max_tokens=100,
        tools=TOOLS,
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": use.id, "name": use.name, "input": use.input},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": [{"type": "text", "text": "18C and sunny"}]},
                    {"type": "text", "text": "And tomorrow?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}},
                ],
            },
        ],
    )
    messages = _sent(wire)["messages"]
    assert messages[1] == {
        "role": "assistant",
        "content": "Let me look.",
        "tool_calls": [
            {
                "id": use.id,
                "type": "function",
                "function": {"name": TOOL_NAME, "arguments": json.dumps(use.input, separators=(",", ":"))},
            }
        ],
    }
    assert messages[2] == {"role": "tool", "tool_call_id": use.id, "content": "18C and sunny"}
    assert messages[3] == {
        "role": "user",
        "content": [
            {"type": "text", "text": "And tomorrow?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        ],
    }


async def test_streamed_tool_use_gives_input_json_deltas(sdk: anthropic.AsyncAnthropic) -> None:
    async with sdk.messages.stream(
        model="local-tool", max_tokens=100, tools=TOOLS, messages=[{"role": "user", "content": "Weather?"}]
    ) as stream:
        kinds = [event.delta.type async for event in stream if event.type == "content_block_delta"]
        final = await stream.get_final_message()
    assert set(kinds) == {"input_json_delta"}
    assert final.stop_reason == "tool_use" and final.content[0].input == json.loads(TOOL_ARGS)


async def test_count_tokens(sdk: anthropic.AsyncAnthropic) -> None:
    short = await sdk.messages.count_tokens(model="auto", messages=[{"role": "user", "content": "hi"}])
    longer = await sdk.messages.count_tokens(
        model="auto", system="You are terse.", tools=TOOLS, messages=[{"role": "user", "content": "hi " * 50}]
    )
    assert 0 < short.input_tokens < longer.input_tokens


async def test_key_in_x_api_key_or_bearer(gateway: httpx.AsyncClient) -> None:
    body = {"model": "auto", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}
    by_header = await gateway.post("/v1/messages", json=body, headers={"authorization": "", "x-api-key": MASTER_KEY})
    by_bearer = await gateway.post("/v1/messages", json=body)
    assert by_header.status_code == by_bearer.status_code == 200


async def test_bad_key_is_the_sdks_authentication_error(gateway: httpx.AsyncClient) -> None:
    http = httpx2.AsyncClient(transport=httpx2.ASGITransport(app=gateway.app))  # type: ignore[attr-defined]
    bad = anthropic.AsyncAnthropic(api_key="sk-wrong", base_url="http://gateway", http_client=http, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        await bad.messages.create(model="auto", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "authentication_error"


@pytest.mark.parametrize(
    ("body", "status", "kind", "names"),
    [
        ({"model": "auto", "messages": [{"role": "user", "content": "hi"}]}, 400, "invalid_request_error", "max_tokens"),
        ({"model": "auto", "max_tokens": 5, "messages": []}, 400, "invalid_request_error", "messages"),
        (
            {"model": "auto", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            400,
            "invalid_request_error",
            "messages.0.role",
        ),
        (
            {"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "video"}]}]},
            400,
            "invalid_request_error",
            "messages.0.content.0.type",
        ),
        (
            {
                "model": "auto",
                "max_tokens": 5,
                "tools": [{"type": "web_search_20250305", "name": "web_search"}],
                "messages": [{"role": "user", "content": "hi"}],
            },
            400,
            "invalid_request_error",
            "tools.0.type",
        ),
        ({"model": "nope", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, 404, "not_found_error", "nope"),
        ({"model": "base-only", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, 503, "overloaded_error", ""),
        (
            {"model": "local-context", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
            400,
            "invalid_request_error",
            "context",
        ),
        (
            {"model": "local-ratelimit", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
            429,
            "rate_limit_error",
            "",
        ),
    ],
)
async def test_refusals_in_anthropics_error_shape(
    gateway: httpx.AsyncClient, body: dict, status: int, kind: str, names: str
) -> None:
    response = await gateway.post("/v1/messages", json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert set(error) == {"type", "error"} and error["type"] == "error"
    assert error["error"]["type"] == kind and names in error["error"]["message"]


async def test_malformed_and_oversized_bodies(gateway: httpx.AsyncClient) -> None:
    broken = await gateway.post("/v1/messages", content=b'{"model": "auto", "messages": [')
    assert broken.status_code == 400 and broken.json()["error"]["type"] == "invalid_request_error"
    huge = await gateway.post("/v1/messages", content=b"x" * (gateway.app.state.gateway.runtime.body_limits.max_bytes + 1))  # type: ignore[attr-defined]
    assert huge.status_code == 413 and huge.json()["error"]["type"] == "request_too_large"
    version = await gateway.post("/v1/messages", json={}, headers={"anthropic-version": "latest"})
    assert version.status_code == 400 and "anthropic-version" in version.json()["error"]["message"]


async def test_base_model_is_never_chosen_and_explain_says_why(gateway: httpx.AsyncClient) -> None:
    response = await gateway.post(
        "/v1/route/explain", json={"model": "base-only", "messages": [{"role": "user", "content": "hi"}]}
    )
    excluded = {e["deployment"]: e["reason"] for e in response.json()["excluded"]}
    assert "kind base" in excluded["pretrained"]


async def test_same_headers_and_ledger_rows_as_chat_completions(gateway: httpx.AsyncClient) -> None:
    chat = await gateway.post(
        "/v1/chat/completions", json={"model": "auto", "max_tokens": 20, "messages": [{"role": "user", "content": "Say hi"}]}
    )
    message = await gateway.post(
        "/v1/messages", json={"model": "auto", "max_tokens": 20, "messages": [{"role": "user", "content": "Say hi"}]}
    )
    names = (
        "x-switchyard-route",
        "x-switchyard-rule",
        "x-switchyard-deployment",
        "x-switchyard-sensitivity",
        "x-switchyard-task",
        "x-switchyard-fallbacks",
        "x-switchyard-cost-usd",
    )
    assert [chat.headers.get(n) for n in names] == [message.headers.get(n) for n in names]
    assert "x-ratelimit-remaining-requests" in chat.headers and "x-ratelimit-remaining-requests" in message.headers
    state = gateway.app.state.gateway  # type: ignore[attr-defined]
    await state.ledger.flush()
    async with state.db.session() as session:
        rows = {r.request_id: r for r in (await session.exec(select(UsageRecord))).all()}
    a, b = rows[chat.headers["x-request-id"]], rows[message.headers["x-request-id"]]
    same = (
        "project",
        "requested_model",
        "route",
        "deployment",
        "provider",
        "locality",
        "sensitivity",
        "task",
        "prompt_tokens",
        "completion_tokens",
        "cost_usd",
        "status",
        "streamed",
    )
    assert [getattr(a, f) for f in same] == [getattr(b, f) for f in same]


async def test_openapi_declares_the_routes(gateway: httpx.AsyncClient) -> None:
    paths = orjson.loads((await gateway.get("/openapi.json")).content)["paths"]
    assert "post" in paths["/v1/messages"] and "post" in paths["/v1/messages/count_tokens"]


async def test_upstream_failure_is_anthropic_shaped(tmp_path: Path) -> None:
    dead = FakeUpstream("dead")
    await dead.start()
    config = make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/l.db",
            "ledger": {"spool_dir": str(tmp_path / "spool")},
            "retries": {"max_attempts_per_deployment": 1},
            "deployments": [
                {
                    "name": "broken",
                    "provider": "openai_compatible",
                    "base_url": dead.base_url,
                    "model": "error-500",
                    "locality": "self_hosted",
                }
            ],
            "routes": [{"name": "auto", "candidates": ["broken"]}],
        }
    )
    try:
        async with app_client(config) as client:
            response = await client.post(
                "/v1/messages", json={"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
            )
    finally:
        await dead.stop()
    assert response.status_code == 502 and response.json()["error"]["type"] == "api_error"


async def test_wrong_method_on_the_messages_route_is_anthropic_shaped(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/v1/messages")
    assert response.status_code == 405 and response.json()["type"] == "error"
