"""The OpenAI SDK against the gateway in-process: an agent loop that json.loads every tool call,
tool choices, errors and logprobs, with requests counted on the wire so SDK retries would show."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio

from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, app_client, fake_deployment, make_config

pytestmark = pytest.mark.asyncio(loop_scope="module")

LOCAL = {
    "name": "local",
    "provider": "llamacpp",
    "model": "smollm2-135m-instruct",
    "locality": "self_hosted",
    "n_ctx": 2048,
    "capabilities": ["chat", "completions", "embeddings", "tools", "json_schema"],
}
QUESTION = {"role": "user", "content": "What is the weather in Paris?"}
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


@dataclass
class Rig:
    """An in-process gateway (embedded model + fake upstream) and a wire counter for SDK calls."""

    app: Any
    fake: FakeUpstream
    requests: list[str] = field(default_factory=list)

    def sdk(self, max_retries: int = 2) -> openai.AsyncOpenAI:
        async def count(request: httpx.Request) -> None:
            self.requests.append(request.url.path)

        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url="http://gateway", event_hooks={"request": [count]}, timeout=120
        )
        return openai.AsyncOpenAI(api_key=MASTER_KEY, base_url="http://gateway/v1", http_client=http, max_retries=max_retries)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def rig() -> AsyncIterator[Rig]:
    fake = FakeUpstream("fake")
    await fake.start()
    config = make_config(
        {
            "deployments": [LOCAL, fake_deployment("fake", fake.base_url, model="bad-param")],
            "routes": [{"name": "auto", "candidates": ["local"]}],
            "retries": {"max_attempts_per_deployment": 1},
        }
    )
    try:
        async with app_client(config) as client:
            yield Rig(client.app, fake)  # type: ignore[attr-defined]
    finally:
        await fake.stop()


# ---------------------------------------------------------------- an agent loop


async def agent_turn(sdk: openai.AsyncOpenAI, messages: list[Any], *, stream: bool, **options: Any) -> tuple[str, Any]:
    """One model turn as an agent framework reads it: (finish_reason, assistant message dict)."""
    if not stream:
        answer = await sdk.chat.completions.create(model="local", messages=messages, **options)
        choice = answer.choices[0]
        return choice.finish_reason, choice.message.model_dump(exclude_none=True)
    content, calls, finish = "", {}, None
    async for chunk in await sdk.chat.completions.create(model="local", messages=messages, stream=True, **options):
        for choice in chunk.choices:
            content += choice.delta.content or ""
            for delta in choice.delta.tool_calls or ():
                call = calls.setdefault(delta.index, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
                call["id"] += delta.id or ""
                if delta.function is not None:
                    call["function"]["name"] += delta.function.name or ""
                    call["function"]["arguments"] += delta.function.arguments or ""
            finish = choice.finish_reason or finish
    message: dict[str, Any] = {"role": "assistant", "content": content or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return finish, message


async def run_agent(sdk: openai.AsyncOpenAI, *, stream: bool, max_tokens: int) -> list[str]:
    """Call tools until the model stops calling them; json.loads every call's arguments."""
    messages: list[Any] = [QUESTION]
    finishes = []
    for turn in range(3):
        forced = {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}
        options = forced if turn == 0 else {"tools": [WEATHER], "tool_choice": "none"}
        finish, message = await agent_turn(sdk, messages, stream=stream, max_tokens=max_tokens, **options)
        finishes.append(finish)
        messages.append(message)
        for call in message.get("tool_calls") or ():
            arguments = json.loads(call["function"]["arguments"])  # what every agent framework does
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": call["id"],
                    "content": json.dumps({"city": arguments.get("city"), "celsius": 21}),
                }
            )
        if finish != "tool_calls":
            break
    return finishes


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_agent_loop_survives_a_tool_call_cut_short(rig: Rig, stream: bool) -> None:
    finishes = await run_agent(rig.sdk(), stream=stream, max_tokens=4)
    assert finishes == ["length"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
async def test_agent_loop_calls_a_tool_and_answers(rig: Rig, stream: bool) -> None:
    finishes = await run_agent(rig.sdk(), stream=stream, max_tokens=60)
    assert finishes[0] == "tool_calls" and finishes[-1] in ("stop", "length") and len(finishes) == 2


# ---------------------------------------------------------------- tool_choice, counted on the wire


async def test_custom_tool_choice_is_answered_once_not_retried(rig: Rig) -> None:
    rig.requests.clear()
    custom = {
        "type": "custom",
        "custom": {"name": "count", "format": {"type": "grammar", "grammar": {"syntax": "regex", "definition": "[0-9]{1,2}"}}},
    }
    answer = await rig.sdk().chat.completions.create(
        model="local",
        messages=[QUESTION],
        tools=[custom],
        tool_choice={"type": "custom", "custom": {"name": "count"}},
        max_tokens=8,
    )
    assert rig.requests == ["/v1/chat/completions"]  # no 5xx, so no SDK retry
    call = answer.choices[0].message.tool_calls[0]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert call.type == "custom" and call.custom.name == "count" and call.custom.input.isdigit()


async def test_lark_grammar_is_a_400_naming_it_and_not_retried(rig: Rig) -> None:
    rig.requests.clear()
    lark = {
        "type": "custom",
        "custom": {"name": "sql", "format": {"type": "grammar", "grammar": {"syntax": "lark", "definition": "start: /x/"}}},
    }
    with pytest.raises(openai.BadRequestError) as refused:
        await rig.sdk().chat.completions.create(
            model="local", messages=[QUESTION], tools=[lark], tool_choice={"type": "custom", "custom": {"name": "sql"}}
        )
    assert refused.value.param == "tools[0].custom.format" and "lark" in refused.value.message
    assert rig.requests == ["/v1/chat/completions"]


async def test_allowed_tools_choice_calls_an_allowed_tool(rig: Rig) -> None:
    choice = {
        "type": "allowed_tools",
        "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "get_time"}}]},
    }
    answer = await rig.sdk().chat.completions.create(
        model="local", messages=[QUESTION], tools=[WEATHER, TIME], tool_choice=choice, max_tokens=60
    )
    assert [c.function.name for c in answer.choices[0].message.tool_calls] == ["get_time"]


async def test_required_with_several_tools_calls_one(rig: Rig) -> None:
    answer = await rig.sdk().chat.completions.create(
        model="local", messages=[QUESTION], tools=[WEATHER, TIME], tool_choice="required", max_tokens=80
    )
    choice = answer.choices[0]
    assert choice.finish_reason == "tool_calls"
    json.loads(choice.message.tool_calls[0].function.arguments)


# ---------------------------------------------------------------- errors, counted at the fake upstream


async def test_upstream_param_reaches_the_sdk_once(rig: Rig) -> None:
    rig.fake.records.clear()
    with pytest.raises(openai.BadRequestError) as refused:
        await rig.sdk().chat.completions.create(model="fake", messages=[QUESTION], temperature=5)
    assert refused.value.param == "temperature"
    assert len(rig.fake.records) == 1  # a 400 is retried by nobody


async def test_upstream_html_error_is_summarised(rig: Rig) -> None:
    rig.fake.mode = "html-502"
    try:
        with pytest.raises(openai.APIStatusError) as failed:
            await rig.sdk(max_retries=0).chat.completions.create(model="fake", messages=[QUESTION])
    finally:
        rig.fake.mode = None
    assert failed.value.status_code == 502
    message = failed.value.response.json()["error"]["message"]
    assert "<" not in message and "nginx" not in message and "text/html" in message


async def test_out_of_vocabulary_logit_bias_is_a_400(rig: Rig) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await rig.sdk().chat.completions.create(model="local", messages=[QUESTION], logit_bias={"99999999": -100}, max_tokens=2)
    assert refused.value.param == "logit_bias"


async def test_echo_logprobs_through_the_sdk(rig: Rig) -> None:
    prompt = "Red, green, blue,"
    answer = await rig.sdk().completions.create(model="local", prompt=prompt, max_tokens=3, echo=True, logprobs=1)
    choice = answer.choices[0]
    logprobs = choice.logprobs
    assert choice.text.startswith(prompt) and logprobs.text_offset[0] == 0
    assert all(choice.text[o : o + len(t)] == t for t, o in zip(logprobs.tokens, logprobs.text_offset, strict=True))
    assert logprobs.token_logprobs[0] is None and all(lp is not None for lp in logprobs.token_logprobs[1:])


async def test_token_array_prompt_through_the_sdk(rig: Rig) -> None:
    from providers.tokens import _encoding

    ids = _encoding("cl100k_base").encode("The capital of France is")
    answer = await rig.sdk().completions.create(model="local", prompt=[ids], max_tokens=2, echo=True)
    assert answer.choices[0].text.startswith("The capital of France is")
