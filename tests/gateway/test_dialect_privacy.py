"""A secret planted where only the new formats carry it (an Anthropic ``tool_result`` block, a
Responses ``function_call_output`` or message item) is seen by the sensitivity scan and never
reaches a hosted deployment: the hosted fake records every body it receives."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from tests.fakes.wire_upstream import WireUpstream
from tests.helpers import app_client, make_config

CARD = "4111 1111 1111 1111"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"


@pytest.fixture(scope="module")
async def setup(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[httpx.AsyncClient, WireUpstream]]:
    wire = await WireUpstream().start()
    tmp = tmp_path_factory.mktemp("privacy")
    config = make_config(
        {
            "database_url": f"sqlite:///{tmp}/l.db",
            "ledger": {"spool_dir": str(tmp / "spool")},
            "deployments": [
                {
                    "name": "hosted",
                    "provider": "openai_compatible",
                    "base_url": wire.url("openai", "/v1"),
                    "model": "gpt-4o-mini",
                    "api_key": "sk-test",
                    "locality": "hosted",
                    "quality": 5,
                    "capabilities": ["chat", "tools"],
                },
                {
                    "name": "home",
                    "provider": "vllm",
                    "base_url": wire.url("vllm", "/v1"),
                    "model": "served-model",
                    "locality": "self_hosted",
                    "quality": 1,
                    "capabilities": ["chat", "tools"],
                },
            ],
            "routes": [{"name": "auto", "objective": "best", "candidates": ["hosted", "home"]}],
        }
    )
    async with app_client(config) as client:
        yield client, wire
    await wire.stop()


def _hosted_saw(wire: WireUpstream, secret: str) -> bool:
    return any(secret in orjson.dumps(r.body).decode() for r in wire.received("openai"))


TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": "customer"}}
TOOLS = [{"name": "lookup", "input_schema": {"type": "object"}}]


def anthropic_body(secret: str, stream: bool) -> dict[str, Any]:
    return {
        "model": "auto",
        "max_tokens": 20,
        "stream": stream,
        "tools": TOOLS,
        "messages": [
            {"role": "user", "content": "Look the customer up."},
            {"role": "assistant", "content": [TOOL_USE]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_1",
                        "content": [{"type": "text", "text": f"card on file: {secret}"}],
                    }
                ],
            },
        ],
    }


def responses_body(secret: str, stream: bool, where: str) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"role": "user", "content": "Look the customer up."},
        {"type": "function_call", "call_id": "c1", "name": "lookup", "arguments": "{}"},
    ]
    if where == "output":
        items.append({"type": "function_call_output", "call_id": "c1", "output": f"key: {secret}"})
    else:
        items += [
            {"type": "function_call_output", "call_id": "c1", "output": "found"},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": f"also {secret}"}]},
        ]
    return {"model": "auto", "stream": stream, "input": items}


async def test_clean_requests_go_to_the_hosted_deployment(setup: tuple[httpx.AsyncClient, WireUpstream]) -> None:
    client, wire = setup
    first = await client.post("/v1/messages", json=anthropic_body("nothing secret", False))
    second = await client.post("/v1/responses", json=responses_body("nothing secret", False, "output"))
    assert first.headers["x-switchyard-deployment"] == second.headers["x-switchyard-deployment"] == "hosted"
    assert _hosted_saw(wire, "nothing secret")  # the fake does record what it receives


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("secret", [CARD, AWS_KEY])
async def test_secret_in_a_tool_result_block_stays_home(
    setup: tuple[httpx.AsyncClient, WireUpstream], secret: str, stream: bool
) -> None:
    client, wire = setup
    response = await client.post("/v1/messages", json=anthropic_body(secret, stream))
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-deployment"] == "home"
    assert response.headers["x-switchyard-sensitivity"] in ("confidential", "restricted")
    assert not _hosted_saw(wire, secret)
    assert any(secret in orjson.dumps(r.body).decode() for r in wire.received("vllm"))


@pytest.mark.parametrize("where", ["output", "message"])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("secret", [CARD, AWS_KEY])
async def test_secret_in_a_responses_input_item_stays_home(
    setup: tuple[httpx.AsyncClient, WireUpstream], secret: str, stream: bool, where: str
) -> None:
    client, wire = setup
    response = await client.post("/v1/responses", json=responses_body(secret, stream, where))
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-deployment"] == "home"
    assert not _hosted_saw(wire, secret)
