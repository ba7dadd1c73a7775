"""What the official OpenAI SDK does with the gateway's answers: retries it should not make, and
errors it must see as the caller's own."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, app_client, fake_deployment, make_config

MESSAGES = [{"role": "user", "content": "hi"}]


def _sdk(client: httpx.AsyncClient) -> openai.AsyncOpenAI:
    """The SDK with its default retry policy (2 retries), talking to the in-process gateway."""
    transport = httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]
    return openai.AsyncOpenAI(
        api_key=MASTER_KEY, base_url="http://gateway/v1", http_client=httpx.AsyncClient(transport=transport, timeout=30)
    )


def _config(tmp_path: Path, *deployments: dict, routes: list | None = None):
    return make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "ledger": {"spool_dir": str(tmp_path / "spool")},
            "deployments": list(deployments),
            "routes": routes or [{"name": "auto", "candidates": [d["name"] for d in deployments]}],
            "retries": {"max_attempts_per_deployment": 2, "backoff_base_s": 0.001, "backoff_max_s": 0.01},
        }
    )


async def test_one_sdk_call_reaches_a_failing_upstream_only_as_often_as_the_gateway_retries(tmp_path: Path) -> None:
    upstream = FakeUpstream("failing")
    await upstream.start()
    try:
        config = _config(tmp_path, fake_deployment("d0", upstream.base_url, model="error-500"))
        async with app_client(config) as client:
            with pytest.raises(openai.InternalServerError) as caught:
                await _sdk(client).chat.completions.create(model="auto", messages=MESSAGES)
    finally:
        await upstream.stop()
    assert caught.value.response.headers["x-should-retry"] == "false"
    assert len(upstream.records) == 2  # the gateway's two attempts; the SDK's own two retries never happen


async def test_after_a_fallback_the_sdk_does_not_retry_either(tmp_path: Path) -> None:
    first, second = FakeUpstream("a"), FakeUpstream("b")
    await first.start()
    await second.start()
    try:
        config = _config(
            tmp_path,
            fake_deployment("a", first.base_url, model="error-503"),
            fake_deployment("b", second.base_url, model="error-500"),
        )
        async with app_client(config) as client:
            with pytest.raises(openai.APIStatusError) as caught:
                await _sdk(client).chat.completions.create(model="auto", messages=MESSAGES)
    finally:
        await first.stop()
        await second.stop()
    assert caught.value.status_code == 503 and caught.value.response.headers["x-should-retry"] == "false"
    assert (len(first.records), len(second.records)) == (2, 2)


async def test_an_image_to_a_text_only_model_named_explicitly_is_the_callers_400(tmp_path: Path) -> None:
    upstream = FakeUpstream("text")
    await upstream.start()
    try:
        config = _config(tmp_path, fake_deployment("text-only", upstream.base_url, capabilities=["chat"]))
        async with app_client(config) as client:
            image = {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}
            with pytest.raises(openai.BadRequestError) as caught:
                await _sdk(client).chat.completions.create(
                    model="text-only", messages=[{"role": "user", "content": [{"type": "text", "text": "what is it?"}, image]}]
                )
    finally:
        await upstream.stop()
    assert caught.value.status_code == 400 and caught.value.code == "model_not_supported"
    assert upstream.records == []  # refused before any backend, and not retried by the SDK


async def test_a_route_whose_backends_are_all_down_is_a_503_the_sdk_may_retry(tmp_path: Path) -> None:
    config = _config(tmp_path, fake_deployment("gone", "http://127.0.0.1:9/v1"))
    async with app_client(config) as client:
        client.app.state.gateway.breakers.configure(1, 60)
        # one failing call opens the breaker; the next request finds no healthy candidate
        with pytest.raises(openai.APIStatusError):
            await _sdk(client).with_options(max_retries=0).chat.completions.create(model="auto", messages=MESSAGES)
        response = await client.post("/v1/chat/completions", json={"model": "auto", "messages": MESSAGES})
    assert response.status_code == 503 and response.json()["error"]["code"] == "no_permitted_deployment"
    assert "retry-after" in response.headers and "x-should-retry" not in response.headers


async def test_a_field_one_candidate_cannot_take_moves_on_to_one_that_can(tmp_path: Path) -> None:
    upstream = FakeUpstream("reasoner")
    await upstream.start()
    try:
        local = {
            "name": "local",
            "provider": "llamacpp",
            "model": "smollm2-135m-instruct",
            "locality": "self_hosted",
            "capabilities": ["chat"],
            "n_threads": 1,
        }
        config = _config(tmp_path, local, fake_deployment("remote", upstream.base_url))
        async with app_client(config) as client:
            moved = await client.post(
                "/v1/chat/completions", json={"model": "auto", "messages": MESSAGES, "reasoning_effort": "high", "max_tokens": 4}
            )
            pinned = await client.post(
                "/v1/chat/completions", json={"model": "local", "messages": MESSAGES, "reasoning_effort": "high", "max_tokens": 4}
            )
    finally:
        await upstream.stop()
    assert moved.status_code == 200 and moved.headers["x-switchyard-deployment"] == "remote"
    assert upstream.records[-1]["body"]["reasoning_effort"] == "high"
    # when every candidate refuses it, the caller hears why, naming the field
    assert pinned.status_code == 400 and pinned.json()["error"]["param"] == "reasoning_effort"


async def test_the_clients_own_metadata_is_forwarded_untouched_and_only_namespaced_keys_are_hints(tmp_path: Path) -> None:
    upstream = FakeUpstream("meta")
    await upstream.start()
    try:
        config = _config(tmp_path, fake_deployment("d0", upstream.base_url))
        async with app_client(config) as client:
            answer = await _sdk(client).chat.completions.create(
                model="auto",
                messages=MESSAGES,
                max_tokens=4,
                metadata={"task": "summarize-ticket", "sensitivity": "whatever", "x-switchyard-task": "summarize"},
            )
            explained = await client.post(
                "/v1/route/explain",
                json={
                    "model": "auto",
                    "messages": MESSAGES,
                    "metadata": {"task": "summarize-ticket", "x-switchyard-task": "code"},
                },
            )
    finally:
        await upstream.stop()
    assert answer.choices  # a spec-valid metadata object is no longer a 400
    assert upstream.records[-1]["body"]["metadata"] == {"task": "summarize-ticket", "sensitivity": "whatever"}
    assert explained.json()["signals"]["task"] == "code"  # the namespaced key is the hint
