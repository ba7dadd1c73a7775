"""Request shaping by task: a rule's ``set:`` parameters reach each attempt's upstream only where
that deployment takes them, win over the client's own value, and explain shows them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.shaping import split
from providers.settings import DeploymentConfig
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, app_client, fake_deployment, make_config

ASK = [{"role": "user", "content": "Is 221 prime? Think it through."}]
RULES = [
    {"name": "think-hard", "when": {"task": ["reasoning"]}, "set": {"reasoning_effort": "high"}},
    {"name": "exact-extraction", "when": {"task": ["extract"]}, "set": {"temperature": 0, "seed": 7}},
]


@pytest.fixture
async def first() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream("first")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def second() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream("second")
    await fake.start()
    yield fake
    await fake.stop()


def _config(tmp_path: Path, first: FakeUpstream, second: FakeUpstream, first_model: str = "reasoner"):
    """``thinker`` (an OpenAI-compatible server, which takes any parameter) is ranked first;
    ``mini`` is gpt-4o-mini through litellm, which litellm's model map says is not a reasoning model."""
    return make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/ledger.db",
            "ledger": {"spool_dir": str(tmp_path / "spool")},
            "deployments": [
                fake_deployment("thinker", first.base_url, model=first_model, capabilities=["chat"]),
                {
                    "name": "mini",
                    "provider": "litellm",
                    "model": "openai/gpt-4o-mini",
                    "base_url": second.base_url,
                    "api_key": "sk-test",
                    "locality": "self_hosted",
                    "pricing": {"input_per_mtok": 1, "output_per_mtok": 1},
                },
            ],
            "routes": [{"name": "auto", "candidates": ["thinker", "mini"], "rules": RULES}],
            "retries": {"max_attempts_per_deployment": 1},
        }
    )


def _sdk(client: httpx.AsyncClient) -> openai.AsyncOpenAI:
    transport = httpx.ASGITransport(app=client.app)  # type: ignore[attr-defined]
    http = httpx.AsyncClient(transport=transport, timeout=60)
    return openai.AsyncOpenAI(api_key=MASTER_KEY, base_url="http://gateway/v1", http_client=http, max_retries=0)


def _task(name: str) -> dict[str, Any]:
    return {"extra_headers": {"x-switchyard-task": name}}


async def test_the_rules_value_reaches_the_upstream_and_wins_over_the_clients(
    tmp_path: Path, first: FakeUpstream, second: FakeUpstream
) -> None:
    async with app_client(_config(tmp_path, first, second)) as client:
        sdk = _sdk(client)
        answer = await sdk.chat.completions.with_raw_response.create(
            model="auto", messages=ASK, reasoning_effort="low", **_task("reasoning")
        )
        assert answer.headers["x-switchyard-rule"] == "think-hard"
        await sdk.chat.completions.create(model="auto", messages=ASK, temperature=1.5, **_task("extract"))
        await sdk.chat.completions.create(model="auto", messages=ASK, temperature=0.7, **_task("chat"))
        streamed = await sdk.chat.completions.create(model="auto", messages=ASK, stream=True, **_task("reasoning"))
        async for _ in streamed:
            pass
    bodies = [r["body"] for r in first.records]
    assert bodies[0]["reasoning_effort"] == "high"  # the admin's policy for the task wins
    assert (bodies[1]["temperature"], bodies[1]["seed"]) == (0, 7) and "reasoning_effort" not in bodies[1]
    assert bodies[2]["temperature"] == 0.7 and "seed" not in bodies[2]  # no rule matched: the client's body as sent
    assert bodies[3]["reasoning_effort"] == "high" and bodies[3]["stream"] is True
    assert second.records == []


async def test_a_fallback_that_does_not_take_a_parameter_is_not_sent_it(
    tmp_path: Path, first: FakeUpstream, second: FakeUpstream
) -> None:
    async with app_client(_config(tmp_path, first, second, first_model="error-500")) as client:
        sdk = _sdk(client)
        answer = await sdk.chat.completions.with_raw_response.create(model="auto", messages=ASK, **_task("reasoning"))
        assert (answer.headers["x-switchyard-deployment"], answer.headers["x-switchyard-fallbacks"]) == ("mini", "1")
        await sdk.chat.completions.create(model="auto", messages=ASK, **_task("extract"))
    assert [r["body"].get("reasoning_effort") for r in first.records] == ["high", None]  # the failed attempt had it
    sent = [r["body"] for r in second.records]
    assert len(sent) == 2
    assert "reasoning_effort" not in sent[0]  # gpt-4o-mini is not a reasoning model: never sent it
    assert (sent[1]["temperature"], sent[1]["seed"]) == (0, 7)  # what it does take, it gets


async def test_explain_shows_what_each_candidate_would_be_sent(tmp_path: Path, first: FakeUpstream, second: FakeUpstream) -> None:
    async with app_client(_config(tmp_path, first, second)) as client:
        report = (
            await client.post(
                "/v1/route/explain", json={"model": "auto", "messages": ASK}, headers={"x-switchyard-task": "reasoning"}
            )
        ).json()
    assert report["rule"] == "think-hard" and report["set"] == {"reasoning_effort": "high"}
    by_name = {c["deployment"]: c["parameters"] for c in report["candidates"]}
    assert by_name["thinker"] == {"set": {"reasoning_effort": "high"}, "not_set": {}}
    assert by_name["mini"]["set"] == {}
    assert "not a reasoning model" in by_name["mini"]["not_set"]["reasoning_effort"]
    assert first.records == [] and second.records == []


def _deployment(provider: str, model: str = "m.gguf", **extra: Any) -> DeploymentConfig:
    return DeploymentConfig.model_validate(
        {"name": "d", "provider": provider, "model": model, "locality": "self_hosted", **extra}
    )


def test_support_comes_from_each_providers_parameter_policy() -> None:
    embedded = _deployment("llamacpp")
    applied, skipped = split({"reasoning_effort": "high", "temperature": 0, "service_tier": "flex"}, embedded)
    assert applied == {"temperature": 0}
    assert skipped["reasoning_effort"].startswith("llamacpp refused it: is not a reasoning model")
    assert skipped["service_tier"].startswith("llamacpp ignored it")  # no effect there: not sent
    assert split({"modalities": ["text"]}, embedded) == ({"modalities": ["text"]}, {})  # a refused one's harmless value
    server = _deployment("vllm", model="meta-llama/Llama-3.1-8B-Instruct")
    assert split({"reasoning_effort": "high", "top_k": 20}, server) == ({"reasoning_effort": "high", "top_k": 20}, {})
    o3 = _deployment("litellm", model="openai/o3-mini")
    assert split({"reasoning_effort": "high"}, o3) == ({"reasoning_effort": "high"}, {})


def test_a_rule_that_sets_an_output_cap_is_refused_with_its_key_path() -> None:
    from gateway.config import ConfigError

    with pytest.raises(ConfigError, match=r"routes\[0\]\.rules\[0\]\.set: .*may not set 'max_tokens'"):
        make_config(
            {
                "deployments": [fake_deployment("a", "http://127.0.0.1:1/v1")],
                "routes": [{"name": "auto", "candidates": ["a"], "rules": [{"name": "r", "set": {"max_tokens": 10}}]}],
            }
        )
