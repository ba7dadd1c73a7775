"""Sensitive data never reaches a hosted deployment: two real upstreams that record what they get."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import app_client, fake_deployment, make_config

CARD = "4111 1111 1111 1111"
SECRET = "sk-proj-" + "Ab3dE5gH7jK9mN2pQ4sT6vX8zA1cE3gI5kM7oQ9sU1w"
BENIGN = "Write a haiku about autumn leaves."


@pytest.fixture
async def pair() -> AsyncIterator[tuple[FakeUpstream, FakeUpstream]]:
    home, cloud = FakeUpstream("home"), FakeUpstream("cloud")
    await home.start()
    await cloud.start()
    yield home, cloud
    await home.stop()
    await cloud.stop()


def _config(home: FakeUpstream, cloud: FakeUpstream, **route: object):
    return make_config(
        {
            "deployments": [
                fake_deployment(
                    "home", home.base_url, locality="self_hosted", pricing={"input_per_mtok": 5, "output_per_mtok": 5}
                ),
                fake_deployment(
                    "cloud", cloud.base_url, locality="hosted", pricing={"input_per_mtok": 0.1, "output_per_mtok": 0.2}
                ),
            ],
            "routes": [
                {
                    "name": "auto",
                    "objective": "cheapest",
                    "candidates": ["home", "cloud"],
                    "rules": [
                        {
                            "name": "keep-private-data-home",
                            "when": {"sensitivity": ["confidential", "restricted"]},
                            "allow": {"locality": ["self_hosted"]},
                        }
                    ],
                    **route,
                }
            ],
            "retries": {"max_attempts_per_deployment": 1},
        }
    )


def _seen(upstream: FakeUpstream, needle: str) -> bool:
    return any(needle in orjson.dumps(r["body"]).decode() for r in upstream.records)


def _chat(content: object, **extra: object) -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": content}], **extra}


async def test_benign_request_goes_to_the_cheaper_hosted_deployment(pair) -> None:
    home, cloud = pair
    async with app_client(_config(home, cloud)) as client:
        response = await client.post("/v1/chat/completions", json=_chat(BENIGN))
    assert response.headers["x-switchyard-deployment"] == "cloud"
    assert response.headers["x-switchyard-sensitivity"] == "public"
    assert _seen(cloud, BENIGN) and not _seen(home, BENIGN)


@pytest.mark.parametrize(
    "body",
    [
        _chat(f"Charge card {CARD} for the order"),
        _chat([{"type": "text", "text": f"my key is {SECRET}"}]),
        {"model": "auto", "messages": [{"role": "system", "content": f"Use {SECRET}"}, {"role": "user", "content": "hi"}]},
        {
            "model": "auto",
            "messages": [
                {"role": "user", "content": "pay"},
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "pay", "arguments": orjson.dumps({"card": CARD}).decode()},
                        }
                    ],
                },
                {"role": "tool", "tool_call_id": "c1", "content": "ok"},
            ],
        },
        _chat(f"Charge card {CARD}", stream=True),
    ],
    ids=["user-card", "content-part-secret", "system-secret", "tool-args-card", "streamed"],
)
async def test_sensitive_requests_stay_home(pair, body: dict) -> None:
    home, cloud = pair
    async with app_client(_config(home, cloud)) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["x-switchyard-deployment"] == "home"
    assert response.headers["x-switchyard-sensitivity"] == "restricted"
    assert cloud.records == []
    assert home.records


async def test_pinned_hosted_model_is_rerouted_for_sensitive_data(pair) -> None:
    home, cloud = pair
    async with app_client(_config(home, cloud)) as client:
        response = await client.post("/v1/chat/completions", json={**_chat(f"card {CARD}"), "model": "cloud"})
        benign = await client.post("/v1/chat/completions", json={**_chat(BENIGN), "model": "cloud"})
    assert response.status_code == 200
    assert response.headers["x-switchyard-deployment"] == "home"
    assert response.headers.get("x-switchyard-rerouted") == "true"
    assert not _seen(cloud, CARD)
    assert benign.headers["x-switchyard-deployment"] == "cloud"


async def test_pinned_hosted_model_is_blocked_when_the_route_says_block(pair) -> None:
    home, cloud = pair
    async with app_client(_config(home, cloud, on_violation="block")) as client:
        response = await client.post("/v1/chat/completions", json={**_chat(f"card {CARD}"), "model": "cloud"})
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["type"] == "permission_error" and error["message"]
    assert cloud.records == [] and home.records == []


@pytest.mark.parametrize("stream", [False, True])
async def test_self_hosted_failure_never_falls_back_to_hosted(pair, stream: bool) -> None:
    home, cloud = pair
    home.mode = "error-500"
    async with app_client(_config(home, cloud)) as client:
        response = await client.post("/v1/chat/completions", json=_chat(f"card {CARD}", stream=stream))
    assert response.status_code in (502, 503)
    assert response.json()["error"]["message"]
    assert cloud.records == []
    assert home.records  # it was tried


async def test_self_hosted_down_by_circuit_is_a_503_naming_the_sensitivity(pair) -> None:
    home, cloud = pair
    home.mode = "error-500"
    async with app_client(_config(home, cloud)) as client:
        for _ in range(6):  # open the circuit breaker on "home"
            await client.post("/v1/chat/completions", json=_chat(f"card {CARD}"))
        response = await client.post("/v1/chat/completions", json=_chat(f"card {CARD}"))
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "no_permitted_deployment"
    assert "restricted" in error["message"]
    assert cloud.records == []


async def test_caller_hint_raises_but_never_lowers(pair) -> None:
    home, cloud = pair
    async with app_client(_config(home, cloud)) as client:
        raised = await client.post(
            "/v1/chat/completions", json=_chat(BENIGN), headers={"x-switchyard-sensitivity": "confidential"}
        )
        lowered = await client.post(
            "/v1/chat/completions", json=_chat(f"card {CARD}"), headers={"x-switchyard-sensitivity": "public"}
        )
        via_metadata = await client.post(
            "/v1/chat/completions", json={**_chat(BENIGN), "metadata": {"x-switchyard-sensitivity": "restricted"}}
        )
    assert raised.headers["x-switchyard-deployment"] == "home"
    assert lowered.headers["x-switchyard-deployment"] == "home"
    assert lowered.headers["x-switchyard-sensitivity"] == "restricted"
    assert via_metadata.headers["x-switchyard-deployment"] == "home"
    assert not _seen(cloud, CARD)


async def test_explain_reports_signals_rule_and_exclusions_without_calling_backends(pair) -> None:
    home, cloud = pair
    async with app_client(_config(home, cloud)) as client:
        response = await client.post("/v1/route/explain", json=_chat(f"card {CARD}"))
    assert response.status_code == 200
    text = response.text
    assert "restricted" in text and "keep-private-data-home" in text
    assert "cloud" in text and "home" in text
    assert "4111" not in text  # never the matched value
    assert home.records == [] and cloud.records == []
