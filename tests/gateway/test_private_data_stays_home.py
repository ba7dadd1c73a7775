"""End to end through the app: private data in any part of a request a backend sees -- a tool
description, a response_format schema, a data: URL, a file part, an unknown extra field, token-id
embeddings input -- never reaches the hosted upstream; a clean request still does."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import app_client, fake_deployment, make_config

CARD = "4111 1111 1111 1111"
EVERYTHING = ["chat", "completions", "embeddings", "tools", "vision", "json_schema"]


@pytest.fixture
async def hosted() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream("hosted")
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def home() -> AsyncIterator[FakeUpstream]:
    fake = FakeUpstream("home")
    await fake.start()
    yield fake
    await fake.stop()


def _config(hosted: FakeUpstream, home: FakeUpstream, unscannable: str = "confidential", **sensitivity: object):
    """The hosted deployment is cheaper, so whatever may go there goes there."""
    return make_config(
        {
            "deployments": [
                fake_deployment(
                    "cloud",
                    hosted.base_url,
                    locality="hosted",
                    capabilities=EVERYTHING,
                    pricing={"input_per_mtok": 0.1, "output_per_mtok": 0.1},
                    unscannable=unscannable,
                ),
                fake_deployment(
                    "home", home.base_url, capabilities=EVERYTHING, pricing={"input_per_mtok": 5, "output_per_mtok": 5}
                ),
            ],
            "routes": [{"name": "auto", "candidates": ["cloud", "home"]}],
            "sensitivity": sensitivity,
            "retries": {"max_attempts_per_deployment": 1},
        }
    )


def _ids(text: str) -> list[int]:
    """``text`` as cl100k token ids, as LangChain's OpenAIEmbeddings sends it by default."""
    from providers.tokens import _encoding  # the encodings bundled offline

    return _encoding("cl100k_base").encode(text)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


ASK = {"role": "user", "content": "Please help with this."}
SENSITIVE_CHATS = {
    "tool description": {
        "messages": [ASK],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "charge",
                    "description": f"Charges the card on file ({CARD}).",
                    "parameters": {"type": "object", "properties": {}},
                },
            }
        ],
    },
    "tool parameter enum": {
        "messages": [ASK],
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "mail",
                    "parameters": {"type": "object", "properties": {"to": {"type": "string", "enum": ["jane.doe@example.com"]}}},
                },
            }
        ],
    },
    "response_format schema": {
        "messages": [ASK],
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "x",
                "schema": {
                    "type": "object",
                    "properties": {"iban": {"type": "string", "default": "DE89 3704 0044 0532 0130 00"}},
                },
            },
        },
    },
    "data: URL": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What does this say?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/svg+xml;base64," + _b64(f"<svg><text>{CARD}</text></svg>")},
                    },
                ],
            }
        ]
    },
    "file part": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "Summarize the file."},
                    {
                        "type": "file",
                        "file": {
                            "filename": "notes.txt",
                            "file_data": "data:text/plain;base64," + _b64(f"ssn 123-45-6789, card {CARD}"),
                        },
                    },
                ],
            }
        ]
    },
    "unknown extra field": {"messages": [ASK], "x_customer": {"ssn": "123-45-6789", "card": [4111, 1111, 1111, 1111]}},
    "binary image": {
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "image_url",
                        "image_url": {"url": "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n\x00\x00").decode()},
                    }
                ],
            }
        ]
    },
}


@pytest.mark.parametrize("case", sorted(SENSITIVE_CHATS))
async def test_private_data_in_any_part_never_reaches_the_hosted_upstream(
    hosted: FakeUpstream, home: FakeUpstream, case: str
) -> None:
    async with app_client(_config(hosted, home)) as client:
        clean = await client.post("/v1/chat/completions", json={"model": "auto", "messages": [ASK]})
        response = await client.post("/v1/chat/completions", json={"model": "auto", **SENSITIVE_CHATS[case]})
    assert clean.status_code == 200 and clean.headers["x-switchyard-deployment"] == "cloud"
    assert response.status_code == 200, response.text
    assert response.headers["x-switchyard-deployment"] == "home"
    assert len(hosted.records) == 1 and hosted.records[0]["body"]["messages"] == [ASK]  # only the clean one
    assert len(home.records) == 1


async def test_token_id_embeddings_are_decoded_and_kept_home(hosted: FakeUpstream, home: FakeUpstream) -> None:
    ids, clean_ids = _ids(f"my card is {CARD}"), _ids("the weather is nice")
    async with app_client(_config(hosted, home)) as client:
        clean = await client.post("/v1/embeddings", json={"model": "auto", "input": [clean_ids]})
        secret = await client.post("/v1/embeddings", json={"model": "auto", "input": [ids]})
        undecodable = await client.post("/v1/embeddings", json={"model": "auto", "input": [[10**9, 10**9 + 1]]})
        explained = await client.post("/v1/route/explain", json={"model": "auto", "input": [ids]})
    assert clean.headers["x-switchyard-deployment"] == "cloud"
    assert secret.headers["x-switchyard-sensitivity"] == "restricted"
    assert secret.headers["x-switchyard-deployment"] == "home"
    assert undecodable.headers["x-switchyard-deployment"] == "home"  # unscannable: confidential by default
    assert [r["body"]["input"] for r in hosted.records] == [[clean_ids]]
    signals = explained.json()["signals"]
    assert signals["sensitivity"] == "restricted" and signals["detections"][0]["entity"] == "credit_card"


async def test_a_request_over_the_scan_budget_stays_home_or_is_refused(hosted: FakeUpstream, home: FakeUpstream) -> None:
    big = {"model": "auto", "messages": [{"role": "user", "content": "word " * 1000}]}
    async with app_client(_config(hosted, home, max_scan_bytes=2048)) as client:
        kept = await client.post("/v1/chat/completions", json=big)
    async with app_client(_config(hosted, home, max_scan_bytes=2048, over_limit="refuse")) as client:
        refused = await client.post("/v1/chat/completions", json=big)
        small = await client.post("/v1/chat/completions", json={"model": "auto", "messages": [ASK]})
    assert kept.status_code == 200 and kept.headers["x-switchyard-deployment"] == "home"
    assert kept.headers["x-switchyard-sensitivity"] == "confidential"
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "request_too_large"
    assert small.headers["x-switchyard-deployment"] == "cloud"
    assert not [r for r in hosted.records if r["body"]["messages"] != [ASK]]


async def test_images_reach_a_hosted_deployment_that_accepts_unscannable_content(
    hosted: FakeUpstream, home: FakeUpstream
) -> None:
    config = _config(hosted, home, unscannable="public")
    image = {
        "model": "auto",
        "messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}],
    }
    async with app_client(config) as client:
        response = await client.post("/v1/chat/completions", json=image)
    assert response.headers["x-switchyard-deployment"] == "cloud"


async def test_plain_metadata_task_is_forwarded_untouched_not_taken_as_a_hint(hosted: FakeUpstream, home: FakeUpstream) -> None:
    body = {"model": "auto", "messages": [ASK], "metadata": {"task": "summarize-ticket", "sensitivity": "low"}}
    async with app_client(_config(hosted, home)) as client:
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    assert hosted.records[-1]["body"]["metadata"] == {"task": "summarize-ticket", "sensitivity": "low"}
