"""Self-hosted presets over the OpenAI-compatible adapter: default base URLs, health probes on each
server's own endpoints, context-window discovery, and their quirks (TGI's model name, Ollama's
tags, vLLM's extra sampling fields)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from providers.presets import PRESETS, same_model, server_root
from providers.registry import build_provider
from providers.self_hosted import SelfHostedProvider
from providers.settings import DeploymentConfig
from tests.fakes.wire_upstream import CONTEXT_WINDOW, WireUpstream

pytestmark = pytest.mark.asyncio(loop_scope="module")
SERVERS = ("vllm", "ollama", "llamacpp_server", "tgi", "lmstudio")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fake() -> AsyncIterator[WireUpstream]:
    server = await WireUpstream().start()
    yield server
    await server.stop()


def preset(provider: str, base_url: str | None, **extra: object) -> SelfHostedProvider:
    config = DeploymentConfig(
        name=f"{provider}-0", provider=provider, model="served-model", locality="self_hosted", base_url=base_url, **extra
    )  # type: ignore[arg-type]
    adapter = build_provider(config)
    assert isinstance(adapter, SelfHostedProvider)
    return adapter


@pytest.mark.parametrize("provider", SERVERS)
async def test_default_base_url(provider: str) -> None:
    adapter = preset(provider, None)
    assert adapter.config.base_url == PRESETS[provider].default_base_url
    assert adapter.http.base_url.endswith("/v1") and adapter.root.base_url == server_root(adapter.http.base_url)


@pytest.mark.parametrize("provider", SERVERS)
async def test_health_probe_and_context_discovery(fake: WireUpstream, provider: str) -> None:
    adapter = preset(provider, fake.url(provider, "/v1"))
    try:
        assert await adapter.health() is True
        probed = [r.path for r in fake.received(provider)]
        assert all(path in probed for path in PRESETS[provider].health_paths)
        discovered = await adapter.discover()
        assert discovered.context_window == CONTEXT_WINDOW
        assert discovered.models
    finally:
        await adapter.aclose()


@pytest.mark.parametrize("provider", SERVERS)
async def test_health_probe_fails_when_the_server_is_down(provider: str) -> None:
    adapter = preset(provider, "http://127.0.0.1:9/v1", timeouts={"connect": 0.5, "first_byte": 1})
    try:
        assert await adapter.health() is False
        await adapter.start()  # discovery failing is logged, never raised
        assert adapter.discovered is None
    finally:
        await adapter.aclose()


async def test_tgi_gets_its_own_model_name(fake: WireUpstream) -> None:
    adapter = preset("tgi", fake.url("tgi", "/v1"))
    try:
        await adapter.chat({"model": "auto", "messages": [{"role": "user", "content": "hi"}]})
        assert fake.received("tgi")[-1].body["model"] == "tgi"
    finally:
        await adapter.aclose()


async def test_ollama_tags_match_models_without_a_tag(fake: WireUpstream) -> None:
    assert same_model("llama3.2:latest", "llama3.2") and not same_model("llama3.2:1b", "llama3.2")
    adapter = preset("ollama", fake.url("ollama", "/v1"))
    try:
        await adapter.start()
        assert adapter.discovered is not None and adapter.discovered.context_window == CONTEXT_WINDOW
        shown = [r for r in fake.received("ollama") if r.path == "/api/show"]
        assert shown and shown[-1].body == {"model": "served-model"}
    finally:
        await adapter.aclose()


async def test_vllm_extra_sampling_fields_are_forwarded(fake: WireUpstream) -> None:
    adapter = preset("vllm", fake.url("vllm", "/v1"))
    try:
        extra = {"top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "guided_json": {"type": "object"}}
        await adapter.chat({"model": "auto", "messages": [{"role": "user", "content": "hi"}], **extra})
        sent = fake.received("vllm")[-1].body
        assert {k: sent[k] for k in extra} == extra and sent["model"] == "served-model"
    finally:
        await adapter.aclose()
