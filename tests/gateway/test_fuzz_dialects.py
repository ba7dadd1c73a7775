"""Whatever JSON a client sends to /v1/messages, /v1/messages/count_tokens or /v1/responses, the
answer is a 2xx or a 4xx in that format's own error shape, never a 500."""

from __future__ import annotations

from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import app_client, fake_deployment, make_config

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
block = st.fixed_dictionaries(
    {"type": st.sampled_from(["text", "image", "tool_use", "tool_result", "document", "thinking"]) | json_values},
    optional={
        "text": json_values,
        "source": json_values,
        "id": json_values,
        "name": json_values,
        "input": json_values,
        "tool_use_id": json_values,
        "content": json_values | st.just([{"type": "text", "text": "r"}]),
        "is_error": json_values,
    },
)
anthropic_message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant"]) | json_values},
    optional={"content": st.text(max_size=10) | st.lists(block, max_size=3) | json_values},
)
anthropic_body = st.fixed_dictionaries(
    {"model": st.sampled_from(["auto", "d0"]) | json_values},
    optional={
        "max_tokens": st.integers(-3, 10**6) | json_values,
        "messages": st.lists(anthropic_message, max_size=3) | json_values,
        "system": st.text(max_size=10)
        | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": json_values}), max_size=2)
        | json_values,
        "stream": st.booleans() | json_values,
        "tools": st.lists(
            st.fixed_dictionaries({"name": json_values}, optional={"input_schema": json_values, "type": json_values}), max_size=2
        )
        | json_values,
        "tool_choice": st.fixed_dictionaries(
            {"type": st.sampled_from(["auto", "any", "tool", "none"]) | json_values}, optional={"name": json_values}
        )
        | json_values,
        "stop_sequences": json_values,
        "temperature": json_values,
        "top_k": json_values,
        "metadata": json_values,
    },
)
item = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "function_call", "function_call_output", "reasoning"]) | json_values},
    optional={
        "role": st.sampled_from(["user", "assistant", "system"]) | json_values,
        "content": st.text(max_size=10)
        | st.lists(
            st.fixed_dictionaries(
                {"type": st.sampled_from(["input_text", "input_image", "output_text"]) | json_values},
                optional={"text": json_values, "image_url": json_values},
            ),
            max_size=2,
        )
        | json_values,
        "call_id": json_values,
        "name": json_values,
        "arguments": json_values,
        "output": json_values,
    },
)
responses_body = st.fixed_dictionaries(
    {"model": st.sampled_from(["auto", "d0"]) | json_values},
    optional={
        "input": st.text(max_size=10) | st.lists(item, max_size=3) | json_values,
        "instructions": json_values,
        "stream": st.booleans() | json_values,
        "max_output_tokens": st.integers(-3, 10**6) | json_values,
        "tools": st.lists(
            st.fixed_dictionaries(
                {"type": st.just("function") | json_values, "name": json_values}, optional={"parameters": json_values}
            ),
            max_size=2,
        )
        | json_values,
        "tool_choice": json_values,
        "text": st.fixed_dictionaries({"format": json_values}) | json_values,
        "store": json_values,
        "previous_response_id": json_values,
        "metadata": json_values,
        "temperature": json_values,
    },
)


def _examples(count: int = 120) -> list[tuple[dict, dict]]:
    examples: list[tuple[dict, dict]] = []

    @settings(max_examples=count, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(messages=anthropic_body, responses=responses_body)
    def collect(messages: dict, responses: dict) -> None:
        examples.append((messages, responses))

    collect()
    examples.append(
        ({"model": "auto", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}, {"model": "auto", "input": "hi"})
    )
    examples.append(
        (
            {"model": "auto", "max_tokens": 5, "stream": True, "messages": [{"role": "user", "content": "hi"}]},
            {"model": "auto", "input": "hi", "stream": True},
        )
    )
    return examples


def _check_anthropic(response) -> None:
    assert response.status_code < 500 or response.status_code in (502, 503, 504), response.text
    if response.status_code >= 400:
        body = response.json()
        assert body["type"] == "error" and set(body["error"]) == {"type", "message"} and body["error"]["message"]


def _check_openai(response) -> None:
    assert response.status_code < 500 or response.status_code in (502, 503, 504), response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]


async def test_arbitrary_bodies_on_the_new_routes_never_cause_a_500(tmp_path: Path) -> None:
    upstream = FakeUpstream("fuzz")
    await upstream.start()
    config = make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/l.db",
            "ledger": {"spool_dir": str(tmp_path / "spool")},
            "deployments": [fake_deployment("d0", upstream.base_url, capabilities=["chat", "tools", "vision", "json_schema"])],
            "routes": [{"name": "auto", "candidates": ["d0"]}],
            "projects": [{"name": "default", "limits": {"rpm": 100000, "tpm": 100000000}}],
        }
    )
    examples = _examples()
    statuses: dict[str, set[int]] = {"messages": set(), "responses": set()}
    try:
        async with app_client(config) as client:
            for messages, responses in examples:
                for path in ("/v1/messages", "/v1/messages/count_tokens"):
                    response = await client.post(path, content=orjson.dumps(messages))
                    _check_anthropic(response)
                    statuses["messages"].add(response.status_code)
                response = await client.post("/v1/responses", content=orjson.dumps(responses))
                _check_openai(response)
                statuses["responses"].add(response.status_code)
    finally:
        await upstream.stop()
    assert {200, 400} <= statuses["messages"] and {200, 400} <= statuses["responses"]
