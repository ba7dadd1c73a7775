"""OpenAI's Responses API on the gateway, with the official ``openai`` SDK's ``responses`` client:
``response`` objects and typed event streams, the request translated faithfully for the backend,
stateless refusals naming the parameter, and OpenAI-shaped errors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest

from tests.fakes.wire_fixtures import ANSWER, COMPLETION_TOKENS, PROMPT_TOKENS, TOOL_ARGS, TOOL_NAME
from tests.fakes.wire_upstream import WireUpstream
from tests.helpers import MASTER_KEY, app_client, make_config

TOOLS = [
    {
        "type": "function",
        "name": TOOL_NAME,
        "description": "Weather in a city",
        "strict": True,
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


@pytest.fixture(scope="module")
async def wire() -> AsyncIterator[WireUpstream]:
    server = await WireUpstream().start()
    yield server
    await server.stop()


def _deployment(name: str, wire: WireUpstream, scenario: str) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "vllm",
        "model": "served-model",
        "base_url": wire.url("vllm", "/v1"),
        "locality": "self_hosted",
        "capabilities": ["chat", "tools", "json_schema", "vision"],
        "headers": {"x-fake-scenario": scenario},
        "timeouts": {"connect": 1, "first_byte": 5, "read": 5},
    }


@pytest.fixture(scope="module")
async def sdk(wire: WireUpstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[openai.AsyncOpenAI]:
    tmp = tmp_path_factory.mktemp("responses")
    config = make_config(
        {
            "database_url": f"sqlite:///{tmp}/ledger.db",
            "ledger": {"spool_dir": str(tmp / "spool")},
            "retries": {"max_attempts_per_deployment": 1},
            "deployments": [
                _deployment("local", wire, "answer"),
                _deployment("local-tool", wire, "tool"),
                _deployment("local-context", wire, "context"),
            ],
            "routes": [{"name": "auto", "candidates": ["local"]}],
        }
    )
    async with app_client(config) as client:
        http = httpx.AsyncClient(transport=httpx.ASGITransport(app=client.app), timeout=30)  # type: ignore[attr-defined]
        yield openai.AsyncOpenAI(api_key=MASTER_KEY, base_url="http://gateway/v1", http_client=http, max_retries=0)


def _sent(wire: WireUpstream) -> dict[str, Any]:
    return wire.received("vllm")[-1].body


async def test_create_with_string_input(sdk: openai.AsyncOpenAI, wire: WireUpstream) -> None:
    raw = await sdk.responses.with_raw_response.create(
        model="auto",
        input="Capital of France?",
        instructions="Be brief.",
        max_output_tokens=60,
        temperature=0.3,
        top_p=0.9,
        user="u-1",
        metadata={"ticket": "42"},
    )
    response = raw.parse()
    assert response.object == "response" and response.status == "completed" and response.id.startswith("resp_")
    assert response.output_text == ANSWER
    assert response.output[0].type == "message" and response.output[0].content[0].type == "output_text"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert response.instructions == "Be brief." and response.max_output_tokens == 60
    assert raw.headers["x-switchyard-deployment"] == "local" and raw.headers["x-switchyard-route"] == "auto"
    sent = _sent(wire)
    assert sent["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Capital of France?"}]
    assert (sent["max_tokens"], sent["temperature"], sent["top_p"], sent["user"], sent["metadata"]) == (
        60,
        0.3,
        0.9,
        "u-1",
        {"ticket": "42"},
    )


async def test_items_tools_and_json_schema_are_translated(sdk: openai.AsyncOpenAI, wire: WireUpstream) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    await sdk.responses.create(
        model="auto",
        tools=TOOLS,
        tool_choice={"type": "function", "name": TOOL_NAME},
        text={"format": {"type": "json_schema", "name": "reply", "schema": schema, "strict": True}},
        input=[
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Weather?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,iVBORw0KGgo="},
                ],
            },
            {"type": "function_call", "call_id": "call_1", "name": TOOL_NAME, "arguments": '{"city":"Paris"}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        ],
    )
    sent = _sent(wire)
    assert sent["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": TOOL_NAME, "arguments": '{"city":"Paris"}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "18C"},
    ]
    assert sent["tools"][0] == {
        "type": "function",
        "function": {"name": TOOL_NAME, "parameters": TOOLS[0]["parameters"], "description": "Weather in a city", "strict": True},
    }
    assert sent["tool_choice"] == {"type": "function", "function": {"name": TOOL_NAME}}
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}


async def test_function_call_output_item(sdk: openai.AsyncOpenAI) -> None:
    response = await sdk.responses.create(model="local-tool", input="Weather in Paris?", tools=TOOLS)
    call = response.output[0]
    assert call.type == "function_call" and call.name == TOOL_NAME and json.loads(call.arguments) == json.loads(TOOL_ARGS)
    assert call.call_id == "call_fx1"


async def test_stream_is_the_typed_event_sequence(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.responses.create(model="auto", input="hi", stream=True)
    events = [event async for event in stream]
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == ANSWER
    completed = events[-1].response
    assert completed.output_text == ANSWER and completed.usage.output_tokens == COMPLETION_TOKENS


async def test_streamed_function_call_arguments(sdk: openai.AsyncOpenAI) -> None:
    async with sdk.responses.stream(model="local-tool", input="Weather?", tools=TOOLS) as stream:
        deltas = [e.delta async for e in stream if e.type == "response.function_call_arguments.delta"]
        final = await stream.get_final_response()
    assert "".join(deltas) == TOOL_ARGS
    assert final.output[0].type == "function_call" and final.output[0].arguments == TOOL_ARGS


async def test_bad_key_is_authentication_error(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.AuthenticationError):
        await sdk.with_options(api_key="sk-wrong").responses.create(model="auto", input="hi")


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"previous_response_id": "resp_123"}, "previous_response_id"),
        ({"store": True}, "store"),
        ({"input": []}, "input"),
        ({"input": [{"type": "web_search_call"}]}, "input[0].type"),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"text": {"format": {"type": "yaml"}}}, "text.format.type"),
    ],
)
async def test_bad_requests_name_the_parameter(sdk: openai.AsyncOpenAI, kwargs: dict, param: str) -> None:
    kwargs = {"model": "auto", "input": "hi", **kwargs}
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.responses.create(**kwargs)
    assert caught.value.param == param and caught.value.body["type"] == "invalid_request_error"


async def test_context_error_passes_through(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.responses.create(model="local-context", input="hi")
    assert caught.value.code == "context_length_exceeded"
