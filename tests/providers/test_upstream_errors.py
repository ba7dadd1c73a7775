"""Upstream errors as a client sees them: the param kept, the message summarised, never echoed."""

from __future__ import annotations

import orjson
import pytest

from core.errors import UpstreamStatus
from providers.openai_compatible import OpenAICompatibleProvider
from providers.settings import DeploymentConfig
from providers.upstream_errors import MAX_MESSAGE, read_error_body, summarise
from tests.fakes.openai_upstream import FakeUpstream

QUESTION = [{"role": "user", "content": "hi"}]


def openai_error(message: str, **fields: object) -> bytes:
    return orjson.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None, **fields}})


def test_short_openai_shaped_message_and_param_are_kept() -> None:
    error = read_error_body(openai_error("Invalid value for 'top_p'.", param="top_p", code="invalid_value"), 400)
    assert (error.message, error.param, error.code, error.type) == (
        "Invalid value for 'top_p'.",
        "top_p",
        "invalid_value",
        "invalid_request_error",
    )


def test_vllm_top_level_error_shape_is_read() -> None:
    body = orjson.dumps(
        {"object": "error", "message": "max_tokens is too large", "type": "BadRequestError", "param": "max_tokens", "code": 400}
    )
    error = read_error_body(body, 400)
    assert (error.message, error.param, error.code) == ("max_tokens is too large", "max_tokens", "400")


def test_html_is_never_repeated() -> None:
    page = b"<html><head><title>502 Bad Gateway</title></head><body><h1>502</h1></body></html>"
    error = read_error_body(page, 502, "text/html; charset=utf-8")
    assert "<" not in error.message and "text/html" in error.message and error.param is None
    wrapped = read_error_body(openai_error("<b>upstream</b> failed"), 500)
    assert "<" not in wrapped.message


def test_long_or_multi_line_messages_are_summarised_within_a_bound() -> None:
    trace = "Validation failed:\n" + "\n".join(f"  at secret/path/module_{i}.py:{i}" for i in range(500))
    error = read_error_body(openai_error(trace), 400)
    assert len(error.message) <= MAX_MESSAGE and "\n" not in error.message
    assert error.message.startswith("Validation failed:") and "secret/path" not in error.message
    one_long_line = "x" * 5000
    assert len(summarise(one_long_line, 400)) <= MAX_MESSAGE


def test_untrustworthy_labels_are_dropped() -> None:
    error = read_error_body(openai_error("bad", param="<script>", code={"nested": 1}), 400)
    assert error.param is None and error.code is None


@pytest.mark.parametrize(
    ("model", "status", "param", "forbidden"),
    [
        ("bad-param", 400, "temperature", None),
        ("html-502", 502, None, "<"),
        ("long-error", 400, None, "secret/path"),
    ],
)
async def test_http_adapter_errors_keep_param_and_summarise(
    model: str, status: int, param: str | None, forbidden: str | None
) -> None:
    fake = FakeUpstream("vllm")
    await fake.start()
    provider = OpenAICompatibleProvider(
        DeploymentConfig(name="vllm", provider="openai_compatible", model=model, locality="self_hosted", base_url=fake.base_url)
    )
    try:
        with pytest.raises(UpstreamStatus) as caught:
            await provider.chat({"messages": QUESTION})
        with pytest.raises(UpstreamStatus) as streamed:
            await anext(provider.chat_stream({"messages": QUESTION, "stream": True}))
    finally:
        await provider.aclose()
        await fake.stop()
    for error in (caught.value, streamed.value):
        assert error.status == status and error.param == param
        body = error.to_dict()["error"]
        assert body["param"] == param
        assert len(body["message"]) <= MAX_MESSAGE + len("vllm: ") and "\n" not in body["message"]
        if forbidden is not None:
            assert forbidden not in body["message"]


@pytest.mark.parametrize("status", [401, 403])
def test_a_backend_refusing_the_gateways_key_is_never_quoted(status: int) -> None:
    body = b'{"error": {"message": "Incorrect API key provided: sk-gate****1234. You can find your API key at ...", "type": "invalid_request_error", "code": "invalid_api_key"}}'
    read = read_error_body(body, status)
    assert "sk-gate" not in read.message and "1234" not in read.message
    assert read.code == "upstream_auth_error"
