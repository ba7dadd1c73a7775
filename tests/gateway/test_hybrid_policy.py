"""The hand-written hybrid policy that config.example.yaml ships (commented out, as route
"hybrid"), driven branch by branch through the real gateway with the OpenAI SDK as the client.

The route, its rules and the ``routing:`` thresholds are read from the example file itself; only
the deployments' endpoints become fake upstreams (same names, localities, capabilities and
qualities as the example). Volume is driven for real: requests push the project's rate over a
small threshold, across two gateway instances that share it through Redis.
"""

from __future__ import annotations

import contextlib
import copy
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import yaml
from redis.asyncio import Redis

from gateway.config import GatewayConfig
from tests.db.fixtures import REDIS_URL
from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, ROOT, app_client, make_config

ROUTE = "hybrid"


def uncommented_example() -> dict[str, Any]:
    """config.example.yaml with its commented ``- name:`` blocks (deployments, routes) restored."""
    lines: list[str] = []
    for line in (ROOT / "config.example.yaml").read_text().splitlines():
        if line.startswith("  # - name:") or (line.startswith("  #   ") and lines and lines[-1].startswith("  ")):
            lines.append("  " + line[4:])
        else:
            lines.append(line)
    data = yaml.safe_load("\n".join(lines))
    assert isinstance(data, dict)
    return data


def example_policy() -> tuple[dict[str, Any], dict[str, dict[str, Any]], dict[str, Any]]:
    """The example's hybrid route, its candidates' deployment blocks and its ``routing:`` section."""
    data = uncommented_example()
    route = next(r for r in data["routes"] if r["name"] == ROUTE)
    deployments = {d["name"]: d for d in data["deployments"] if d["name"] in route["candidates"]}
    return route, deployments, data["routing"]


def rule_names() -> list[str]:
    return [rule["name"] for rule in example_policy()[0]["rules"]]


def hybrid_config(
    upstreams: dict[str, FakeUpstream], project: str, *, high_rpm: float, images_to_hosted: bool, redis: bool = False
) -> GatewayConfig:
    route, examples, routing = example_policy()
    deployments = []
    for name, example in examples.items():
        deployments.append(
            {
                "name": name,
                "provider": "openai_compatible",
                "base_url": upstreams[name].base_url,
                "model": name,
                "timeouts": {"connect": 1, "first_byte": 5, "read": 5},
                **{k: example[k] for k in ("locality", "capabilities", "context_window", "quality") if k in example},
                # the example's own prices where it has them; a hosted one costs something
                "pricing": example.get("pricing") or {"input_per_mtok": 0.15, "output_per_mtok": 0.6},
                # images reach a hosted model only when its `unscannable` is below confidential
                "unscannable": "public" if images_to_hosted else example.get("unscannable", "confidential"),
            }
        )
    routing = copy.deepcopy(routing)
    routing["volume"] = {**routing["volume"], "high_rpm": high_rpm, "sync_interval_s": 60}  # rounds run by the test
    data: dict[str, Any] = {
        "deployments": deployments,
        "routes": [route],
        "routing": routing,
        "projects": [{"name": project}],  # the master key's project
        "retries": {"max_attempts_per_deployment": 1},
    }
    if redis:
        data["redis_url"] = REDIS_URL
        data["circuit_breaker"] = {"shared": False}
    return make_config(data)


@pytest.fixture
async def upstreams() -> AsyncIterator[dict[str, FakeUpstream]]:
    _, examples, _ = example_policy()
    fakes = {name: FakeUpstream(name) for name in examples}
    for fake in fakes.values():
        await fake.start()
    yield fakes
    for fake in fakes.values():
        await fake.stop()


def sdk(client: httpx.AsyncClient) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(api_key=MASTER_KEY, base_url="http://gateway/v1", http_client=client, max_retries=0)


async def ask(client: openai.AsyncOpenAI, content: Any, **extra: Any) -> tuple[str, str, str]:
    """(deployment, rule, answer) for one chat on the hybrid route."""
    raw = await client.chat.completions.with_raw_response.create(
        model=ROUTE, messages=[{"role": "user", "content": content}], max_tokens=16, **extra
    )
    answer = raw.parse().choices[0].message.content or ""
    return raw.headers["x-switchyard-deployment"], raw.headers["x-switchyard-rule"], answer


CLASSIFY = "Classify the sentiment of this review as positive or negative: the pasta was wonderful."
IMAGE = [
    {"type": "text", "text": "What is in this picture?"},
    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
]


def test_the_example_ships_the_hybrid_policy() -> None:
    """The route the tests below drive is the one in config.example.yaml, in the issue's order."""
    _, deployments, routing = example_policy()
    assert rule_names() == [
        "private-data-stays-home",
        "busy-simple-work-to-small-model",
        "images-to-frontier",
        "hard-to-frontier",
        "the-rest-self-hosted",
    ]
    assert {d["locality"] for d in deployments.values()} == {"self_hosted", "hosted"}
    assert set(routing) >= {"volume", "complexity"}
    config = hybrid_config({n: FakeUpstream(n) for n in deployments}, "p", high_rpm=600, images_to_hosted=False)
    assert [r.name for r in config.routes] == [ROUTE]


async def test_each_branch_lands_where_the_policy_says(upstreams: dict[str, FakeUpstream]) -> None:
    private, _, images, hard, rest = rule_names()
    config = hybrid_config(upstreams, f"hybrid-{uuid.uuid4().hex[:8]}", high_rpm=600, images_to_hosted=True)
    async with app_client(config) as client:
        oa = sdk(client)
        # PII (an e-mail address): confidential, so self-hosted
        assert await ask(oa, "Draft a reply to jane.doe@example.com about her invoice.") == (
            "vllm-llama-8b",
            private,
            "Hello from vllm-llama-8b. This is a scripted answer with several words .",
        )
        # images: the frontier hosted model (best quality; gpt-4o-mini is the cheaper of the two)
        deployment, rule, _ = await ask(oa, IMAGE)
        assert (deployment, rule) == ("gpt-4o-mini", images)
        # high complexity (task reasoning, markers prove + step by step): hosted
        deployment, rule, _ = await ask(oa, "Prove step by step that the sum of two odd numbers is even.")
        assert (deployment, rule) == ("gpt-4o-mini", hard)
        # a simple task while the project is quiet, and anything else: self-hosted, for cost
        assert (await ask(oa, CLASSIFY))[:2] == ("vllm-llama-8b", rest)
        assert (await ask(oa, "Tell me a short story about a lighthouse."))[:2] == ("vllm-llama-8b", rest)
        explained = (
            await client.post("/v1/route/explain", json={"model": ROUTE, "messages": [{"role": "user", "content": IMAGE}]})
        ).json()
        proof = {"model": ROUTE, "messages": [{"role": "user", "content": "Prove step by step that 7 is prime."}]}
        reasoned = (await client.post("/v1/route/explain", json=proof)).json()
    assert reasoned["rule"] == hard and reasoned["signals"]["complexity"] == "high"
    assert reasoned["signals"]["complexity_reason"] == "high (3 points, high at 2): task reasoning, markers: step by step, prove"
    assert explained["rule"] == images and explained["signals"]["needs"] == ["vision"]
    assert (
        explained["signals"]["volume"] == "normal" and "requests/min over the last 60 s" in explained["signals"]["volume_reason"]
    )
    assert [len(upstreams[n].records) for n in ("vllm-llama-8b", "gpt-4o-mini", "local-smollm2", "claude-haiku")] == [3, 2, 0, 0]


async def test_with_the_examples_unscannable_level_images_are_refused_not_sent(upstreams: dict[str, FakeUpstream]) -> None:
    """The example's hosted deployments keep `unscannable: confidential`: an image is unscannable, so
    the images rule finds no permitted deployment and the gateway answers 503 instead of sending it."""
    config = hybrid_config(upstreams, f"hybrid-{uuid.uuid4().hex[:8]}", high_rpm=600, images_to_hosted=False)
    async with app_client(config) as client:
        with pytest.raises(openai.APIStatusError) as refused:
            await ask(sdk(client), IMAGE)
    assert refused.value.status_code == 503 and "images-to-frontier" in refused.value.message
    assert not any(fake.records for fake in upstreams.values())


async def test_hard_requests_fall_back_home_when_no_frontier_model_answers(upstreams: dict[str, FakeUpstream]) -> None:
    _, _, _, hard, _ = rule_names()
    for name in ("gpt-4o-mini", "claude-haiku"):
        upstreams[name].mode = "error-503"
    config = hybrid_config(upstreams, f"hybrid-{uuid.uuid4().hex[:8]}", high_rpm=600, images_to_hosted=False)
    async with app_client(config) as client:
        raw = await sdk(client).chat.completions.with_raw_response.create(
            model=ROUTE, messages=[{"role": "user", "content": "Prove step by step that 7 is prime."}], max_tokens=16
        )
    assert raw.headers["x-switchyard-rule"] == hard
    assert (raw.headers["x-switchyard-deployment"], raw.headers["x-switchyard-fallbacks"]) == ("vllm-llama-8b", "2")
    assert len(upstreams["gpt-4o-mini"].records) == len(upstreams["claude-haiku"].records) == 1


@contextlib.asynccontextmanager
async def redis_volume_keys(project: str) -> AsyncIterator[None]:
    redis = Redis.from_url(REDIS_URL)
    try:
        await redis.ping()
    except Exception as exc:
        pytest.fail(f"Redis is not reachable at {REDIS_URL} (run `make services`): {exc}")
    try:
        yield
    finally:
        keys = [k async for k in redis.scan_iter(match=f"*{project}*", count=1000)]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


async def test_a_busy_project_across_two_replicas_sends_simple_tasks_to_the_small_model(
    upstreams: dict[str, FakeUpstream],
) -> None:
    """Threshold 6 requests/min. Three requests on each instance: neither alone is busy, together
    they are; after one background round each, both instances agree and route alike."""
    _, busy, _, _, rest = rule_names()
    project = f"hybrid-{uuid.uuid4().hex[:8]}"
    config = hybrid_config(upstreams, project, high_rpm=6, images_to_hosted=False, redis=True)
    async with redis_volume_keys(project), app_client(config) as first, app_client(config) as second:
        replicas = [(first, sdk(first)), (second, sdk(second))]
        for _, oa in replicas:
            for _ in range(3):
                assert (await ask(oa, CLASSIFY))[:2] == ("vllm-llama-8b", rest)
        meters = [client.app.state.gateway.volume for client, _ in replicas]  # type: ignore[attr-defined]
        for meter in (*meters, meters[0]):  # the rounds the background task runs every sync_interval_s
            await meter.sync_once()
        for client, _ in replicas:
            explained = (
                await client.post("/v1/route/explain", json={"model": ROUTE, "messages": [{"role": "user", "content": CLASSIFY}]})
            ).json()
            assert explained["signals"]["volume"] == "high", explained["signals"]
            assert explained["signals"]["volume_reason"] == "high: 6.0 requests/min over the last 60 s, at or above 6"
            assert explained["rule"] == busy and explained["candidates"][0]["deployment"] == "local-smollm2"
        for _, oa in replicas:
            assert (await ask(oa, CLASSIFY))[:2] == ("local-smollm2", busy)
            # the busy rule is for simple tasks only: a story still goes to the general self-hosted model
            assert (await ask(oa, "Tell me a short story about a lighthouse."))[:2] == ("vllm-llama-8b", rest)
    assert len(upstreams["local-smollm2"].records) == 2
    assert not upstreams["gpt-4o-mini"].records and not upstreams["claude-haiku"].records
