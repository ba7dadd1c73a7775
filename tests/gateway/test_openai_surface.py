"""The OpenAI surface in-process: shapes, status codes, headers, fallbacks, streams, failures."""

from __future__ import annotations

import openai
import orjson
import pytest

from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import MASTER_KEY, app_client, fake_deployment, make_config

CHAT = {"model": "auto", "messages": [{"role": "user", "content": "Say hello"}]}


def _config(upstream: FakeUpstream, *models: str, **route: object):
    deployments = [fake_deployment(f"d{i}", upstream.base_url, model=m) for i, m in enumerate(models)]
    return make_config(
        {
            "deployments": deployments,
            "routes": [{"name": "auto", "candidates": [d["name"] for d in deployments], **route}],
            "retries": {"max_attempts_per_deployment": 1},
        }
    )


def _assert_openai_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code
    assert "Traceback" not in response.text
    return body["error"]


async def test_chat_answer_is_upstream_body_with_routing_headers(upstream: FakeUpstream) -> None:
    async with app_client(_config(upstream, "m0")) as client:
        response = await client.post("/v1/chat/completions", json=CHAT, headers={"x-request-id": "req-abc"})
    assert response.status_code == 200
    assert response.json()["choices"][0]["message"]["content"].startswith("Hello from upstream")
    assert response.headers["x-request-id"] == "req-abc"
    assert response.headers["x-switchyard-deployment"] == "d0"
    assert response.headers["x-switchyard-route"] == "auto"
    assert response.headers["x-switchyard-fallbacks"] == "0"
    for name in ("x-switchyard-rule", "x-switchyard-sensitivity", "x-switchyard-task"):
        assert response.headers[name]
    assert upstream.records[-1]["body"]["model"] == "m0"


async def test_request_id_is_minted_when_absent(upstream: FakeUpstream) -> None:
    async with app_client(_config(upstream, "m0")) as client:
        first = await client.post("/v1/chat/completions", json=CHAT)
        second = await client.post("/v1/chat/completions", json=CHAT)
    assert first.headers["x-request-id"].startswith("req_")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


async def test_falls_back_to_next_candidate_on_5xx(upstream: FakeUpstream) -> None:
    async with app_client(_config(upstream, "error-500", "m1")) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    assert response.status_code == 200
    assert response.headers["x-switchyard-deployment"] == "d1"
    assert response.headers["x-switchyard-fallbacks"] == "1"


@pytest.mark.parametrize(
    ("model", "status", "code"),
    [
        ("error-500", 502, "upstream_error"),
        ("error-503", 502, "upstream_error"),
        ("error-429", 429, "rate_limit_exceeded"),
        ("context-overflow", 400, "context_length_exceeded"),
        ("slow-5", 504, "upstream_timeout"),
        ("garbage", 502, "upstream_protocol_error"),
    ],
)
async def test_upstream_failures_surface_as_openai_errors(upstream: FakeUpstream, model: str, status: int, code: str) -> None:
    async with app_client(_config(upstream, model)) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    _assert_openai_error(response, status, code)
    if status == 429:
        assert response.headers["retry-after"] == "1"


async def test_unreachable_upstream_is_a_502(upstream: FakeUpstream) -> None:
    config = make_config({"deployments": [fake_deployment("gone", "http://127.0.0.1:9/v1")]})
    async with app_client(config) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "model": "gone"})
    _assert_openai_error(response, 502, "upstream_connection_error")


async def test_every_candidate_failing_is_a_503_naming_the_plan(upstream: FakeUpstream) -> None:
    async with app_client(_config(upstream, "error-500", "error-503")) as client:
        response = await client.post("/v1/chat/completions", json=CHAT)
    error = _assert_openai_error(response, 503, "no_permitted_deployment")
    assert "d0" in error["message"] and "d1" in error["message"]


@pytest.mark.parametrize(
    ("content", "status", "code"),
    [
        (b"{broken", 400, "invalid_json"),
        (b"", 400, None),
        (b"[1, 2]", 400, "invalid_json"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "missing_required_parameter"),
        (b'{"model": "auto", "messages": []}', 400, "invalid_value"),
        (b'{"model": "auto", "messages": [{"content": "no role"}]}', 400, "invalid_value"),
        (b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}', 400, "invalid_value"),
        (b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400, "invalid_type"),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model_not_found"),
    ],
)
async def test_bad_requests_get_openai_errors_and_reach_no_backend(
    upstream: FakeUpstream, content: bytes, status: int, code: str | None
) -> None:
    async with app_client(_config(upstream, "m0")) as client:
        response = await client.post("/v1/chat/completions", content=content, headers={"content-type": "application/json"})
    _assert_openai_error(response, status, code)
    assert upstream.records == []


async def test_oversized_body_is_a_413(upstream: FakeUpstream) -> None:
    config = _config(upstream, "m0").model_copy(deep=True)
    config = make_config({**orjson.loads(config.model_dump_json()), "server": {"master_key": MASTER_KEY, "max_body_bytes": 2048}})
    async with app_client(config) as client:
        big = {**CHAT, "messages": [{"role": "user", "content": "x" * 5000}]}
        response = await client.post("/v1/chat/completions", json=big)
    _assert_openai_error(response, 413)


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", "Basic abc", "Bearer "])
async def test_missing_or_wrong_key_is_a_401(upstream: FakeUpstream, authorization: str | None) -> None:
    async with app_client(_config(upstream, "m0")) as client:
        headers = {"authorization": authorization} if authorization else {}
        if authorization is None:
            client.headers.pop("authorization")
        response = await client.post("/v1/chat/completions", json=CHAT, headers=headers)
    _assert_openai_error(response, 401, "invalid_api_key")
    assert upstream.records == []


async def test_unknown_path_is_an_openai_shaped_404(upstream: FakeUpstream) -> None:
    async with app_client(_config(upstream, "m0")) as client:
        response = await client.get("/v1/nothing-here")
    _assert_openai_error(response, 404)


async def test_models_list_and_retrieve(upstream: FakeUpstream) -> None:
    async with app_client(_config(upstream, "m0", "m1")) as client:
        listing = (await client.get("/v1/models")).json()
        one = await client.get("/v1/models/auto")
        missing = await client.get("/v1/models/does-not-exist")
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["auto", "d0", "d1"]
    assert one.json()["id"] == "auto"
    _assert_openai_error(missing, 404, "model_not_found")


async def test_stream_is_forwarded_event_by_event(upstream: FakeUpstream) -> None:
    async with app_client(_config(upstream, "m0")) as client:
        response = await client.post(
            "/v1/chat/completions", json={**CHAT, "stream": True, "stream_options": {"include_usage": True}}
        )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line[6:] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.startswith("Hello from upstream")
    assert chunks[-1]["usage"]["completion_tokens"] > 0


async def test_stream_falls_back_before_the_first_chunk(upstream: FakeUpstream) -> None:
    async with app_client(_config(upstream, "error-500", "m1")) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert response.status_code == 200
    assert response.headers["x-switchyard-deployment"] == "d1"
    assert response.text.rstrip().endswith("data: [DONE]")


async def test_stream_cut_halfway_ends_with_an_error_event(upstream: FakeUpstream) -> None:
    async with app_client(_config(upstream, "cut-stream")) as client:
        response = await client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    events = [line[6:] for line in response.text.split("\n\n") if line.startswith("data: ")]
    assert "[DONE]" not in events
    last = orjson.loads(events[-1])
    assert last["error"]["code"] == "upstream_protocol_error"
    assert len(events) >= 2  # the chunks before the cut were forwarded


async def test_openai_sdk_sees_typed_errors(upstream: FakeUpstream) -> None:
    import httpx

    async with app_client(_config(upstream, "m0", "error-429")) as client:
        transport = client._transport  # the in-process ASGI transport
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway/v1") as http:
            sdk = openai.AsyncOpenAI(api_key=MASTER_KEY, base_url="http://gateway/v1", http_client=http, max_retries=0)
            answer = await sdk.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])
            assert answer.choices[0].message.content
            with pytest.raises(openai.NotFoundError):
                await sdk.chat.completions.create(model="missing", messages=[{"role": "user", "content": "hi"}])
            with pytest.raises(openai.RateLimitError):
                await sdk.chat.completions.create(model="d1", messages=[{"role": "user", "content": "hi"}])
            bad = openai.AsyncOpenAI(api_key="sk-wrong", base_url="http://gateway/v1", http_client=http, max_retries=0)
            with pytest.raises(openai.AuthenticationError):
                await bad.models.list()


async def test_embeddings_and_completions_pass_through(upstream: FakeUpstream) -> None:
    async with app_client(_config(upstream, "m0")) as client:
        emb = await client.post("/v1/embeddings", json={"model": "auto", "input": ["a", "b", "a"]})
        cmp = await client.post("/v1/completions", json={"model": "auto", "prompt": "Once upon"})
        bad = await client.post("/v1/embeddings", json={"model": "auto", "input": []})
    vectors = [d["embedding"] for d in emb.json()["data"]]
    assert len(vectors) == 3 and vectors[0] == vectors[2] and vectors[0] != vectors[1]
    assert cmp.json()["object"] == "text_completion"
    _assert_openai_error(bad, 400, "invalid_value")


async def test_metadata_hints_are_not_forwarded(upstream: FakeUpstream) -> None:
    async with app_client(_config(upstream, "m0")) as client:
        body = {**CHAT, "metadata": {"x-switchyard-task": "chat", "customer": "acme"}}
        response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert upstream.records[-1]["body"]["metadata"] == {"customer": "acme"}


async def test_prompt_too_long_for_every_deployment_is_a_400_not_a_503(upstream: FakeUpstream) -> None:
    config = make_config(
        {
            "deployments": [fake_deployment("tiny", upstream.base_url, context_window=64)],
            "routes": [{"name": "auto", "candidates": ["tiny"]}],
        }
    )
    async with app_client(config) as client:
        response = await client.post(
            "/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": "word " * 400}]}
        )
        hint = await client.post("/v1/chat/completions", json=CHAT, headers={"x-switchyard-sensitivity": "secret-ish"})
    _assert_openai_error(response, 400, "context_length_exceeded")
    assert upstream.records == []
    error = _assert_openai_error(hint, 400, "invalid_hint")
    assert error["param"]
