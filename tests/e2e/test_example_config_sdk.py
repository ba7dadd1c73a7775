"""The README's promise: the official OpenAI SDK against `switchyard serve` on the unmodified
example config (embedded SmolLM2, no API keys, no other server)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest

from tests.helpers import ROOT, GatewayProcess

pytestmark = pytest.mark.slow
MASTER = "sk-switchyard-dev-master"  # the example config's default master key


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    workdir = tmp_path_factory.mktemp("example")
    config = workdir / "config.yaml"
    config.write_bytes((ROOT / "config.example.yaml").read_bytes())  # unmodified copy
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != "SWITCHYARD_MASTER_KEY"}
    process = GatewayProcess(config, env=env, cwd=workdir)
    process.start(timeout=120)
    yield process
    process.stop()


@pytest.fixture
def sdk(gateway: GatewayProcess) -> openai.OpenAI:
    return openai.OpenAI(api_key=MASTER, base_url=gateway.base_url + "/v1", max_retries=0, timeout=120)


def test_model_list_contains_auto(sdk: openai.OpenAI) -> None:
    ids = [m.id for m in sdk.models.list()]
    assert "auto" in ids and "local-smollm2" in ids


def test_chat_answer_from_embedded_model(sdk: openai.OpenAI) -> None:
    answer = sdk.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=32
    )
    assert answer.choices[0].message.content.strip()
    assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0


def test_stream_has_several_content_deltas(sdk: openai.OpenAI) -> None:
    stream = sdk.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Name three colours."}], max_tokens=32, stream=True
    )
    deltas = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(deltas) >= 3


def test_embeddings_one_vector_per_input(sdk: openai.OpenAI) -> None:
    result = sdk.embeddings.create(model="auto", input=["the cat sat", "a dog ran", "the cat sat"])
    vectors = [d.embedding for d in result.data]
    assert len(vectors) == 3
    assert len({len(v) for v in vectors}) == 1 and len(vectors[0]) > 8
    assert vectors[0] == vectors[2]
    assert vectors[0] != vectors[1]


def test_wrong_key_is_authentication_error(gateway: GatewayProcess) -> None:
    bad = openai.OpenAI(api_key="sk-wrong", base_url=gateway.base_url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="auto", messages=[{"role": "user", "content": "hi"}])


def test_unknown_model_is_not_found(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}])


def test_broken_json_is_an_openai_shaped_400(gateway: GatewayProcess) -> None:
    response = httpx.post(
        gateway.base_url + "/v1/chat/completions",
        content=b'{"model": "auto", "messages": [',
        headers={"authorization": f"Bearer {MASTER}", "content-type": "application/json"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]


def test_health_and_readiness(gateway: GatewayProcess) -> None:
    assert httpx.get(gateway.base_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(gateway.base_url + "/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"


# ---------------------------------------------------------------- Anthropic Messages and Responses


@pytest.fixture
def claude(gateway: GatewayProcess) -> anthropic.Anthropic:
    return anthropic.Anthropic(api_key=MASTER, base_url=gateway.base_url, max_retries=0, timeout=120)


def test_anthropic_sdk_create(claude: anthropic.Anthropic) -> None:
    raw = claude.messages.with_raw_response.create(
        model="auto",
        max_tokens=32,
        system="Answer briefly.",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
    )
    message = raw.parse()
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    assert raw.headers["x-switchyard-deployment"] == "local-smollm2" and raw.headers["x-switchyard-route"] == "auto"


def test_anthropic_sdk_stream(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(model="auto", max_tokens=32, messages=[{"role": "user", "content": "Name three colours."}]) as s:
        pieces = list(s.text_stream)
        final = s.get_final_message()
    assert len(pieces) >= 3 and final.content[0].text == "".join(pieces)
    assert final.usage.output_tokens > 0 and final.stop_reason in ("end_turn", "max_tokens")


def test_anthropic_sdk_bad_key(gateway: GatewayProcess) -> None:
    bad = anthropic.Anthropic(api_key="sk-wrong", base_url=gateway.base_url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad.messages.create(model="auto", max_tokens=8, messages=[{"role": "user", "content": "hi"}])


def test_responses_sdk_create(sdk: openai.OpenAI) -> None:
    raw = sdk.responses.with_raw_response.create(model="auto", input="What is the capital of France?", max_output_tokens=32)
    response = raw.parse()
    assert response.status in ("completed", "incomplete") and response.output_text.strip()
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert raw.headers["x-switchyard-deployment"] == "local-smollm2"


def test_responses_sdk_stream(sdk: openai.OpenAI) -> None:
    stream = sdk.responses.create(model="auto", input="Name three colours.", max_output_tokens=32, stream=True)
    events = list(stream)
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert len(deltas) >= 3 and events[-1].type in ("response.completed", "response.incomplete")
    assert events[-1].response.output_text == "".join(deltas)


def test_responses_sdk_bad_key(gateway: GatewayProcess) -> None:
    bad = openai.OpenAI(api_key="sk-wrong", base_url=gateway.base_url + "/v1", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.responses.create(model="auto", input="hi")
