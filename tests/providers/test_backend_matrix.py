"""Every backend in docs/providers.md, verified: its wire fixtures (tests/fakes/wire_fixtures.py)
served by a local fake and passed through the gateway with the official OpenAI SDK as the client.

Self-hosted servers go through their presets (``provider: vllm | ollama | ...``) and the shared
OpenAI-compatible adapter; hosted APIs go through litellm pointed at the fake with ``api_base``,
so litellm really translates Anthropic's, Gemini's and Bedrock's formats.

Each backend is checked for: a normal answer, a stream with usage, a stream without usage, a tool
call (whole and streamed), and its errors: context length (400 ``context_length_exceeded``),
rate limit (429 with Retry-After, or the 503 a server sends instead), and a key the backend
refuses (502 ``upstream_auth_error``: the gateway's credentials, not the caller's fault).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio

from tests.fakes.wire_fixtures import ANSWER, COMPLETION_TOKENS, FLAVOURS, PROMPT_TOKENS, RETRY_AFTER, TOOL_ARGS, TOOL_NAME
from tests.fakes.wire_upstream import WireUpstream
from tests.helpers import MASTER_KEY, app_client, make_config

pytestmark = [
    pytest.mark.asyncio(loop_scope="module"),
    pytest.mark.filterwarnings("ignore:Item .* on TypedDict class:UserWarning"),
    pytest.mark.filterwarnings("ignore:Items .* on TypedDict class:UserWarning"),
]

SELF_HOSTED = ("vllm", "ollama", "llamacpp_server", "tgi", "lmstudio")
# Hosted OpenAI-compatible APIs served by the openai_compatible adapter itself. NVIDIA's: litellm's
# nvidia_nim route drops stream_options and max_retries (its client then retries a 429 twice,
# waiting out Retry-After each time), so the gateway speaks to NVIDIA's endpoint directly.
HOSTED_COMPATIBLE = {"nvidia": ("meta/llama-3.1-8b-instruct", "/v1")}
SCENARIOS = ("answer", "tool", "context", "ratelimit", "badkey", "nousage")


def _hosted(model: str, suffix: str = "", **params: Any) -> Any:
    return lambda fake, scenario: {
        "provider": "litellm",
        "model": f"{model}-{scenario}",
        "base_url": fake.url(BACKEND_OF[model], suffix),
        "api_key": "k-test",
        "locality": "hosted",
        "litellm_params": params,
        "pricing": {"input_per_mtok": 1, "output_per_mtok": 2},
    }


HOSTED_MODELS = {
    "openai": ("openai/gpt-4o-mini", "/v1", {}),
    "anthropic": ("anthropic/claude-haiku-4-5", "", {}),
    "gemini": ("gemini/gemini-2.0-flash", "", {}),
    "azure": ("azure/gpt-4o-mini-deployment", "", {"api_version": "2024-10-21"}),
    "bedrock": ("bedrock/converse/meta.llama3-1-8b-instruct", "", {"aws_region_name": "us-east-1"}),
    "mistral": ("mistral/mistral-small-latest", "/v1", {}),
    "groq": ("groq/llama-3.1-8b-instant", "/openai/v1", {}),
    "together": ("together_ai/meta-llama/Llama-3.1-8B-Instruct-Turbo", "/v1", {}),
    "fireworks": ("fireworks_ai/accounts/fireworks/models/llama-v3p1-8b-instruct", "/inference/v1", {}),
    "openrouter": ("openrouter/meta-llama/llama-3.1-8b-instruct", "/api/v1", {}),
    "huggingface": ("huggingface/meta-llama/Llama-3.1-8B-Instruct", "/v1", {}),
    "perplexity": ("perplexity/sonar", "", {}),
}
# Fireworks declares tool support per model: the tool scenario needs a name litellm knows does tools.
TOOL_MODELS = {"fireworks": "fireworks_ai/accounts/fireworks/models/llama-v3p3-70b-instruct"}
TOOLLESS = ("perplexity",)  # Perplexity's API has no function calling: the gateway says so before calling it
BACKEND_OF = {model: backend for backend, (model, _, _) in HOSTED_MODELS.items()}
BACKENDS = (*SELF_HOSTED, *HOSTED_COMPATIBLE, *HOSTED_MODELS)


def deployment(fake: WireUpstream, backend: str, scenario: str) -> dict[str, Any]:
    if backend in SELF_HOSTED:
        fields: dict[str, Any] = {
            "provider": backend,
            "model": "served-model",
            "base_url": fake.url(backend, "/v1"),
            "locality": "self_hosted",
            "headers": {"x-fake-scenario": scenario},
        }
    elif backend in HOSTED_COMPATIBLE:
        model, suffix = HOSTED_COMPATIBLE[backend]
        fields = {
            "provider": "openai_compatible",
            "model": model,
            "base_url": fake.url(backend, suffix),
            "locality": "hosted",
            "api_key": "nvapi-test",
            "headers": {"x-fake-scenario": scenario},
            "pricing": {"input_per_mtok": 1, "output_per_mtok": 2},
        }
    else:
        model, suffix, params = HOSTED_MODELS[backend]
        fields = _hosted(model, suffix, **params)(fake, scenario)
        if scenario == "tool" and backend in TOOL_MODELS:  # litellm looks tool support up by the exact name
            fields.update(model=TOOL_MODELS[backend], headers={"x-fake-scenario": "tool"})
    return {
        "name": f"{backend}-{scenario}",
        "capabilities": ["chat", "tools"],
        "context_window": 4096,
        "timeouts": {"connect": 2, "first_byte": 10, "read": 10},
        **fields,
    }


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fake() -> AsyncIterator[WireUpstream]:
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "AKIDFAKEFORTESTS")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "fake-secret-for-tests")
    server = await WireUpstream().start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sdk(fake: WireUpstream, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[openai.AsyncOpenAI]:
    tmp = tmp_path_factory.mktemp("matrix")
    config = make_config(
        {
            "database_url": f"sqlite:///{tmp}/ledger.db",
            "ledger": {"spool_dir": str(tmp / "spool")},
            "retries": {"max_attempts_per_deployment": 1},
            "circuit_breaker": {"failure_threshold": 1000},
            "deployments": [deployment(fake, b, s) for b in BACKENDS for s in SCENARIOS],
            "routes": [{"name": "auto", "candidates": [f"{BACKENDS[0]}-answer"]}],
        }
    )
    async with app_client(config) as client:
        transport = httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]
        http = httpx.AsyncClient(transport=transport, timeout=30)
        yield openai.AsyncOpenAI(api_key=MASTER_KEY, base_url="http://gateway/v1", http_client=http, max_retries=0)
        await http.aclose()


MESSAGES = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "What is the capital of France?"}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": "Weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }
]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_answer(sdk: openai.AsyncOpenAI, backend: str) -> None:
    raw = await sdk.chat.completions.with_raw_response.create(model=f"{backend}-answer", messages=MESSAGES, max_tokens=50)
    answer = raw.parse()
    assert raw.headers["x-switchyard-deployment"] == f"{backend}-answer"
    assert answer.choices[0].message.content == ANSWER
    assert answer.choices[0].finish_reason == "stop"
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_stream_with_usage(sdk: openai.AsyncOpenAI, backend: str) -> None:
    stream = await sdk.chat.completions.create(
        model=f"{backend}-answer", messages=MESSAGES, max_tokens=50, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ANSWER
    usage = [c.usage for c in chunks if c.usage]
    assert len(usage) == 1 and (usage[0].prompt_tokens, usage[0].completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_stream_without_usage(sdk: openai.AsyncOpenAI, backend: str) -> None:
    """A backend that streams no usage: the client still gets the whole answer and a clean end."""
    stream = await sdk.chat.completions.create(model=f"{backend}-nousage", messages=MESSAGES, max_tokens=50, stream=True)
    chunks = [chunk async for chunk in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert not any(c.usage for c in chunks)  # not asked for: not shown


@pytest.mark.parametrize("backend", TOOLLESS)
async def test_tools_refused_where_the_api_has_none(sdk: openai.AsyncOpenAI, backend: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model=f"{backend}-tool", messages=MESSAGES, tools=TOOLS, max_tokens=50)
    assert caught.value.param == "tools"


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b not in TOOLLESS])
async def test_tool_call(sdk: openai.AsyncOpenAI, backend: str) -> None:
    answer = await sdk.chat.completions.create(model=f"{backend}-tool", messages=MESSAGES, tools=TOOLS, max_tokens=50)
    call = answer.choices[0].message.tool_calls[0]
    assert call.function.name == TOOL_NAME and json.loads(call.function.arguments) == json.loads(TOOL_ARGS)
    assert answer.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("backend", [b for b in BACKENDS if b not in TOOLLESS])
async def test_tool_call_streamed(sdk: openai.AsyncOpenAI, backend: str) -> None:
    stream = await sdk.chat.completions.create(
        model=f"{backend}-tool", messages=MESSAGES, tools=TOOLS, max_tokens=50, stream=True
    )
    names, arguments = [], ""
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                if call.function and call.function.name:
                    names.append(call.function.name)
                arguments += (call.function.arguments or "") if call.function else ""
    assert names == [TOOL_NAME] and json.loads(arguments) == json.loads(TOOL_ARGS)


CONTEXT_BACKENDS = [b for b in BACKENDS if b not in FLAVOURS or FLAVOURS[b].context is not None]
RATE_BACKENDS = [b for b in BACKENDS if b not in FLAVOURS or FLAVOURS[b].ratelimit is not None]
AUTH_BACKENDS = [b for b in BACKENDS if b not in FLAVOURS or FLAVOURS[b].badkey is not None]


@pytest.mark.parametrize("backend", CONTEXT_BACKENDS)
async def test_context_length_error(sdk: openai.AsyncOpenAI, backend: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model=f"{backend}-context", messages=MESSAGES, max_tokens=50)
    assert caught.value.code == "context_length_exceeded", caught.value.body


@pytest.mark.parametrize("backend", RATE_BACKENDS)
async def test_rate_limit_error(sdk: openai.AsyncOpenAI, backend: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(model=f"{backend}-ratelimit", messages=MESSAGES, max_tokens=50)
    error = caught.value
    if backend in FLAVOURS and FLAVOURS[backend].ratelimit.status == 503:  # type: ignore[union-attr]
        assert error.status_code == 502 and error.code == "upstream_error"  # a busy server, not a quota
    else:
        assert error.status_code == 429 and error.code == "rate_limit_exceeded", error.body
        assert error.response.headers["retry-after"] == RETRY_AFTER


@pytest.mark.parametrize("backend", AUTH_BACKENDS)
async def test_backend_refusing_the_key(sdk: openai.AsyncOpenAI, backend: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(model=f"{backend}-badkey", messages=MESSAGES, max_tokens=50)
    assert caught.value.status_code == 502 and caught.value.code == "upstream_auth_error", caught.value.body
