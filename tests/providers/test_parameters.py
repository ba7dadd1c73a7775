"""Each adapter does with each chat request parameter what its PARAMETERS declaration (and so
docs/parameters.md) says: the embedded model refuses what it declares refused and accepts what it
declares ignored; the HTTP adapter forwards every property of the spec untouched; litellm refuses
what the backend lacks instead of dropping it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio

from core.errors import InvalidRequest
from providers.hosted_litellm import LiteLLMProvider
from providers.llamacpp import LlamaCppProvider
from providers.llamacpp_requests import PARAMETERS as LLAMACPP
from providers.openai_compatible import PARAMETERS as OPENAI_COMPATIBLE
from providers.openai_compatible import OpenAICompatibleProvider
from providers.parameters import Handling
from providers.settings import DeploymentConfig
from scripts.parameter_table import request_properties as properties_of
from tests.conformance.spec import vendored
from tests.fakes.openai_upstream import FakeUpstream
from tests.providers.fake_anthropic import FakeAnthropic

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings("ignore:Item .* on TypedDict class:UserWarning"),
]

QUESTION = [{"role": "user", "content": "Say yes."}]
TOOL = {"type": "function", "function": {"name": "noop", "parameters": {"type": "object", "properties": {}}}}

SAMPLES: dict[str, Any] = {
    "audio": {"voice": "alloy", "format": "wav"},
    "frequency_penalty": 0.5,
    "function_call": "auto",
    "functions": [TOOL["function"]],
    "logit_bias": {"50256": -100},
    "logprobs": True,
    "max_completion_tokens": 3,
    "max_tokens": 3,
    "messages": QUESTION,
    "metadata": {"ticket": "T-1", "task": "summarize-ticket"},
    "modalities": ["text", "audio"],
    "model": "client-model",
    "moderation": {"mode": "blocking"},
    "n": 2,
    "parallel_tool_calls": False,
    "prediction": {"type": "content", "content": "yes"},
    "presence_penalty": 0.5,
    "prompt_cache_key": "cache-1",
    "prompt_cache_options": {"ttl": "5m"},
    "prompt_cache_retention": "24h",
    "reasoning_effort": "low",
    "response_format": {"type": "json_object"},
    "safety_identifier": "user-1",
    "seed": 7,
    "service_tier": "auto",
    "stop": ["\n\n"],
    "store": True,
    "stream": False,
    "stream_options": {"include_usage": True},
    "temperature": 0.2,
    "tool_choice": "auto",
    "tools": [TOOL],
    "top_logprobs": 2,
    "top_p": 0.9,
    "user": "user-1",
    "verbosity": "low",
    "web_search_options": {"search_context_size": "low"},
}
"""A plausible value for every property of the spec's chat request."""


def request_properties() -> dict[str, Any]:
    return properties_of(vendored())


async def test_samples_cover_every_property_of_the_spec() -> None:
    assert set(SAMPLES) == set(request_properties())


async def test_every_spec_property_is_declared_or_falls_under_a_listed_rule() -> None:
    for policy in (LLAMACPP, OPENAI_COMPATIBLE):
        for name in request_properties():
            assert policy.rule(name).handling in Handling
    assert set(LLAMACPP.rules) == set(request_properties()), "the embedded model names every parameter"


# ---------------------------------------------------------------- the embedded model


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def local() -> AsyncIterator[LlamaCppProvider]:
    config = DeploymentConfig(
        name="local", provider="llamacpp", model="smollm2-135m-instruct", locality="self_hosted", n_ctx=1024
    )
    provider = LlamaCppProvider(config)
    await provider.start()
    yield provider
    await provider.aclose()


def _declared(handling: Handling) -> list[str]:
    return sorted(n for n, r in LLAMACPP.rules.items() if r.handling is handling)


@pytest.mark.parametrize("name", _declared(Handling.REFUSED))
async def test_embedded_model_refuses_what_it_declares_refused(local: LlamaCppProvider, name: str) -> None:
    body = {"messages": QUESTION, "max_tokens": 2, name: SAMPLES[name]}
    with pytest.raises(InvalidRequest) as refused:
        await local.chat(body)
    assert refused.value.param == name and refused.value.code == "unsupported_parameter"
    assert name in refused.value.message
    with pytest.raises(InvalidRequest) as streamed:
        await anext(local.chat_stream(body))
    assert streamed.value.param == name


@pytest.mark.parametrize("name", [*_declared(Handling.IGNORED), "top_k"])
async def test_embedded_model_accepts_what_it_declares_ignored(local: LlamaCppProvider, name: str) -> None:
    value = SAMPLES.get(name, 5)
    reply = await local.chat({"messages": QUESTION, "max_tokens": 2, name: value})
    assert reply.data["choices"][0]["finish_reason"] in ("stop", "length")


async def test_harmless_value_of_a_refused_parameter_is_accepted(local: LlamaCppProvider) -> None:
    reply = await local.chat({"messages": QUESTION, "max_tokens": 2, "modalities": ["text"]})
    assert reply.data["choices"]


# ---------------------------------------------------------------- openai_compatible


async def test_http_adapter_forwards_every_spec_property_untouched() -> None:
    upstream = FakeUpstream("vllm")
    await upstream.start()
    config = DeploymentConfig(
        name="vllm",
        provider="openai_compatible",
        model="served-model",
        locality="self_hosted",
        base_url=upstream.base_url,
    )
    provider = OpenAICompatibleProvider(config)
    body = {**SAMPLES, "vendor_extra": {"top_k": 5}}
    try:
        await provider.chat(body)
    finally:
        await provider.aclose()
        await upstream.stop()
    received = upstream.records[-1]["body"]
    assert received == {**body, "model": "served-model"}
    assert OPENAI_COMPATIBLE.rule("model").handling is Handling.TRANSLATED


# ---------------------------------------------------------------- litellm


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def anthropic() -> AsyncIterator[FakeAnthropic]:
    async with FakeAnthropic() as server:
        yield server


def claude(base_url: str) -> LiteLLMProvider:
    return LiteLLMProvider(
        DeploymentConfig(
            name="claude",
            provider="litellm",
            model="anthropic/claude-3-5-haiku-20241022",
            locality="hosted",
            base_url=base_url,
            api_key="sk-ant-test",
        )
    )


async def test_litellm_refuses_a_parameter_the_backend_lacks_instead_of_dropping_it(anthropic: FakeAnthropic) -> None:
    before = len(anthropic.requests)
    with pytest.raises(InvalidRequest) as refused:
        await claude(anthropic.base_url).chat({"messages": QUESTION, "logit_bias": {"50256": -100}})
    assert refused.value.param == "logit_bias" and refused.value.code == "unsupported_parameter"
    assert refused.value.status == 400
    assert len(anthropic.requests) == before  # refused before anything was sent


async def test_litellm_does_not_send_defaults_a_backend_lacks(anthropic: FakeAnthropic) -> None:
    reply = await claude(anthropic.base_url).chat(
        {"messages": QUESTION, "n": 1, "logprobs": False, "presence_penalty": 0, "frequency_penalty": 0}
    )
    assert reply.data["choices"][0]["message"]["content"]
    sent = orjson.dumps(anthropic.requests[-1].body).decode()
    assert "logprobs" not in sent and "presence_penalty" not in sent
