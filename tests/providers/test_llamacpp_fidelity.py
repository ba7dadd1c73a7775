"""The embedded model speaks OpenAI's wire format where clients look closely: tool calls (cut
short, forced, custom, allowed, legacy), token-id inputs, logit_bias, echo logprobs, chunk shapes.
Against the real bundled SmolLM2-135M model."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio

from core.errors import InvalidRequest
from providers.llamacpp import LlamaCppProvider
from providers.settings import DeploymentConfig
from providers.tokens import _encoding

pytestmark = pytest.mark.asyncio(loop_scope="module")

QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
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


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def provider() -> AsyncIterator[LlamaCppProvider]:
    config = DeploymentConfig(
        name="local", provider="llamacpp", model="smollm2-135m-instruct", locality="self_hosted", n_ctx=2048
    )
    p = LlamaCppProvider(config)
    await p.start()
    yield p
    await p.aclose()


async def stream_of(provider: LlamaCppProvider, body: dict[str, Any]) -> list[dict[str, Any]]:
    return [orjson.loads(raw) async for raw in provider.chat_stream({**body, "stream": True})]


def streamed_calls(chunks: list[dict[str, Any]]) -> dict[int, dict[str, str]]:
    """Tool calls accumulated the way the OpenAI SDK does it."""
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            for delta in choice["delta"].get("tool_calls") or ():
                call = calls.setdefault(delta["index"], {"name": "", "arguments": ""})
                function = delta.get("function") or {}
                call["name"] += function.get("name") or ""
                call["arguments"] += function.get("arguments") or ""
    return calls


def finish_reasons(chunks: list[dict[str, Any]]) -> list[str]:
    return [c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c.get("finish_reason")]


# ---------------------------------------------------------------- tool calls cut short


@pytest.mark.parametrize("max_tokens", [1, 3, 6])
async def test_tool_call_cut_short_is_length_without_broken_arguments(provider: LlamaCppProvider, max_tokens: int) -> None:
    body = {"messages": QUESTION, "tools": [WEATHER], "tool_choice": NAMED, "max_tokens": max_tokens}
    choice = (await provider.chat(body)).data["choices"][0]
    assert choice["finish_reason"] == "length"
    for call in choice["message"].get("tool_calls") or ():
        json.loads(call["function"]["arguments"])
    chunks = await stream_of(provider, body)
    assert finish_reasons(chunks) == ["length"]
    for call in streamed_calls(chunks).values():
        json.loads(call["arguments"])


async def test_whole_tool_call_is_tool_calls_with_json_arguments(provider: LlamaCppProvider) -> None:
    body = {"messages": QUESTION, "tools": [WEATHER], "tool_choice": NAMED, "max_tokens": 60}
    choice = (await provider.chat(body)).data["choices"][0]
    assert choice["finish_reason"] == "tool_calls" and choice["message"]["content"] is None
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"].startswith("call_")
    assert call["function"]["name"] == "get_weather" and "city" in json.loads(call["function"]["arguments"])
    chunks = await stream_of(provider, body)
    assert finish_reasons(chunks) == ["tool_calls"]
    (streamed,) = streamed_calls(chunks).values()
    assert streamed["name"] == "get_weather" and "city" in json.loads(streamed["arguments"])


async def test_first_streamed_delta_of_a_tool_call_has_null_content(provider: LlamaCppProvider) -> None:
    chunks = await stream_of(provider, {"messages": QUESTION, "tools": [WEATHER], "tool_choice": NAMED, "max_tokens": 60})
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant" and "content" in first and first["content"] is None
    assert all(c["choices"][0]["delta"].get("content") != "" for c in chunks if c["choices"])


# ---------------------------------------------------------------- tool_choice variants


async def test_required_among_several_tools_forces_a_call(provider: LlamaCppProvider) -> None:
    body = {"messages": QUESTION, "tools": [WEATHER, TIME], "tool_choice": "required", "max_tokens": 80}
    choice = (await provider.chat(body)).data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["function"]["name"] in ("get_weather", "get_time")
    json.loads(call["function"]["arguments"])


async def test_allowed_tools_required_calls_only_an_allowed_tool(provider: LlamaCppProvider) -> None:
    choice_spec = {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "get_time"}}]},
    }
    body = {"messages": QUESTION, "tools": [WEATHER, TIME], "tool_choice": choice_spec, "max_tokens": 60}
    choice = (await provider.chat(body)).data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert [c["function"]["name"] for c in choice["message"]["tool_calls"]] == ["get_time"]
    auto = {**choice_spec, "allowed_tools": {**choice_spec["allowed_tools"], "mode": "auto"}}
    text = (await provider.chat({**body, "tool_choice": auto, "max_tokens": 8})).data["choices"][0]
    assert text["finish_reason"] in ("stop", "length")


async def test_custom_tool_with_a_regex_grammar_is_called(provider: LlamaCppProvider) -> None:
    custom = {
        "type": "custom",
        "custom": {
            "name": "set_count",
            "format": {"type": "grammar", "grammar": {"syntax": "regex", "definition": "[0-9]{1,3} apples"}},
        },
    }
    body = {
        "messages": QUESTION,
        "tools": [custom],
        "tool_choice": {"type": "custom", "custom": {"name": "set_count"}},
        "max_tokens": 20,
    }
    choice = (await provider.chat(body)).data["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "custom" and call["custom"]["name"] == "set_count"
    count, unit = call["custom"]["input"].split(" ")
    assert count.isdigit() and unit == "apples"


@pytest.mark.parametrize(
    ("tools", "choice", "stream", "param"),
    [
        (
            [
                {
                    "type": "custom",
                    "custom": {
                        "name": "sql",
                        "format": {"type": "grammar", "grammar": {"syntax": "lark", "definition": "start: /x/"}},
                    },
                }
            ],
            {"type": "custom", "custom": {"name": "sql"}},
            False,
            "tools[0].custom.format",
        ),
        ([{"type": "custom", "custom": {"name": "note"}}], {"type": "custom", "custom": {"name": "note"}}, True, "tools"),
        (
            [{"type": "custom", "custom": {"name": "a"}}, {"type": "custom", "custom": {"name": "b"}}],
            "required",
            False,
            "tool_choice",
        ),
        ([WEATHER], {"type": "function", "function": {"name": "missing"}}, False, "tool_choice"),
        ([WEATHER], {"type": "allowed_tools", "allowed_tools": {"mode": "sometimes", "tools": []}}, False, "tool_choice"),
    ],
    ids=["lark-grammar", "streamed-custom", "required-over-customs", "unknown-name", "bad-allowed-mode"],
)
async def test_tool_choices_it_cannot_honour_are_a_400_naming_the_param(
    provider: LlamaCppProvider, tools: list[Any], choice: Any, stream: bool, param: str
) -> None:
    body = {"messages": QUESTION, "tools": tools, "tool_choice": choice, "max_tokens": 5}
    with pytest.raises(InvalidRequest) as refused:  # noqa: PT012 - one call, stream or not
        if stream:
            await anext(provider.chat_stream({**body, "stream": True}))
        else:
            await provider.chat(body)
    assert refused.value.param == param and refused.value.status == 400


async def test_legacy_functions_answer_in_the_function_call_shape(provider: LlamaCppProvider) -> None:
    body = {"messages": QUESTION, "functions": [WEATHER["function"]], "function_call": {"name": "get_weather"}, "max_tokens": 60}
    choice = (await provider.chat(body)).data["choices"][0]
    assert choice["finish_reason"] == "function_call" and "tool_calls" not in choice["message"]
    assert choice["message"]["function_call"]["name"] == "get_weather"
    json.loads(choice["message"]["function_call"]["arguments"])


# ---------------------------------------------------------------- inputs and sampling


async def test_token_id_inputs_embed_the_text_they_stand_for(provider: LlamaCppProvider) -> None:
    text = "The cat sat on the mat."
    ids = _encoding("cl100k_base").encode(text)
    by_text = (await provider.embed({"input": [text]})).data["data"][0]["embedding"]
    by_ids = (await provider.embed({"input": [ids]})).data["data"][0]["embedding"]
    one_input = (await provider.embed({"input": ids})).data["data"]
    assert by_ids == by_text and len(one_input) == 1 and one_input[0]["embedding"] == by_text
    completed = (await provider.complete({"prompt": [ids], "max_tokens": 2, "echo": True})).data
    assert completed["choices"][0]["text"].startswith(text)


async def test_out_of_vocabulary_logit_bias_is_a_400(provider: LlamaCppProvider) -> None:
    for bias in ({"99999999": -100}, {"17": 250}, {"not-an-id": 1}):
        with pytest.raises(InvalidRequest) as refused:
            await provider.chat({"messages": QUESTION, "max_tokens": 2, "logit_bias": bias})
        assert refused.value.param == "logit_bias"
    with pytest.raises(InvalidRequest):
        await provider.complete({"prompt": "Hi", "max_tokens": 2, "logit_bias": {"99999999": 5}})


async def test_logit_bias_within_the_vocabulary_still_applies(provider: LlamaCppProvider) -> None:
    # Ban the end-of-turn token: the answer must run to max_tokens.
    reply = await provider.chat({"messages": QUESTION, "max_tokens": 12, "logit_bias": {"2": -100}})
    assert reply.data["choices"][0]["finish_reason"] == "length"


async def test_echo_logprobs_score_the_prompt_and_offsets_index_the_text(provider: LlamaCppProvider) -> None:
    prompt = "One, two, three,"
    for choice in [
        (await provider.complete({"prompt": prompt, "max_tokens": 4, "echo": True, "logprobs": 2, "temperature": 0})).data[
            "choices"
        ][0],
        await _streamed_completion(provider, {"prompt": prompt, "max_tokens": 4, "echo": True, "logprobs": 2, "temperature": 0}),
    ]:
        text, logprobs = choice["text"], choice["logprobs"]
        assert text.startswith(prompt)
        tokens, offsets = logprobs["tokens"], logprobs["text_offset"]
        assert "".join(tokens) == text
        assert offsets[0] == 0 and offsets == sorted(offsets)
        for token, offset in zip(tokens, offsets, strict=True):
            assert text[offset : offset + len(token)] == token
        prompt_count = sum(1 for o in offsets if o < len(prompt))
        assert prompt_count >= 3
        assert logprobs["token_logprobs"][0] is None and logprobs["top_logprobs"][0] is None
        assert all(lp is not None and lp <= 0 for lp in logprobs["token_logprobs"][1:])
        assert all(len(top) >= 1 for top in logprobs["top_logprobs"][1:])


async def test_offsets_without_echo_start_after_the_prompt(provider: LlamaCppProvider) -> None:
    prompt = "One, two, three,"
    logprobs = (await provider.complete({"prompt": prompt, "max_tokens": 3, "logprobs": 1})).data["choices"][0]["logprobs"]
    assert logprobs["text_offset"][0] == len(prompt)


async def _streamed_completion(provider: LlamaCppProvider, body: dict[str, Any]) -> dict[str, Any]:
    """One choice assembled from a completions stream (text and logprobs concatenated)."""
    text, merged = "", {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    async for raw in provider.complete_stream({**body, "stream": True}):
        for choice in orjson.loads(raw)["choices"]:
            text += choice["text"]
            for key in merged:
                merged[key] += (choice["logprobs"] or {}).get(key, [])
    return {"text": text, "logprobs": merged}


# ---------------------------------------------------------------- shapes


async def test_no_null_system_fingerprint_or_completion_chunk_usage(provider: LlamaCppProvider) -> None:
    chat = (await provider.chat({"messages": QUESTION, "max_tokens": 2})).data
    assert "system_fingerprint" not in chat
    chunks = await stream_of(provider, {"messages": QUESTION, "max_tokens": 2, "stream_options": {"include_usage": True}})
    assert all("system_fingerprint" not in c for c in chunks)
    raw = [
        orjson.loads(r)
        async for r in provider.complete_stream({"prompt": "Hi", "max_tokens": 2, "stream_options": {"include_usage": True}})
    ]
    assert all("usage" not in c for c in raw[:-1]) and raw[-1]["usage"]["total_tokens"] > 0
    assert all("system_fingerprint" not in c for c in raw)
