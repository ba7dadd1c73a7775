"""Whatever JSON a client sends, the answer is a 2xx or an OpenAI-shaped 4xx — never a 500."""

from __future__ import annotations

from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.openai_upstream import FakeUpstream
from tests.helpers import app_client, fake_deployment, make_config

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
message = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "system", "assistant", "tool"]) | json_values},
    optional={"content": json_values, "tool_calls": json_values, "name": json_values},
)
chat_body = st.fixed_dictionaries(
    {"model": st.sampled_from(["auto", "d0"]) | json_values},
    optional={
        "messages": st.lists(message, max_size=3) | json_values,
        "stream": st.booleans() | json_values,
        "max_tokens": st.integers(-5, 10**6) | json_values,
        "n": json_values,
        "tools": json_values,
        "response_format": json_values,
        "stream_options": json_values,
        "metadata": st.dictionaries(st.sampled_from(["sensitivity", "task", "x-switchyard-task", "other"]), json_values)
        | json_values,
    },
)
embed_body = st.fixed_dictionaries(
    {"model": st.just("auto") | json_values},
    optional={"input": json_values | st.lists(st.lists(st.integers(-3, 99), max_size=3), max_size=3), "dimensions": json_values},
)


def _check(response) -> None:
    assert response.status_code < 500 or response.status_code in (502, 503, 504), response.text
    if response.status_code >= 400:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"} and error["message"]


def _examples(count: int = 150) -> list[tuple[dict, dict, dict]]:
    # hypothesis drives sync functions: draw the examples first, then send them on the test's loop.
    examples: list[tuple[dict, dict, dict]] = []

    @settings(max_examples=count, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        body=chat_body,
        embed=embed_body,
        headers=st.sampled_from([{}, {"x-switchyard-sensitivity": "nonsense"}, {"x-switchyard-task": "code"}]),
    )
    def collect(body: dict, embed: dict, headers: dict) -> None:
        examples.append((body, embed, headers))

    collect()
    # a few well-formed requests among the arbitrary ones, so both sides are always reached
    valid = {"model": "auto", "messages": [{"role": "user", "content": "hi"}]}
    examples += [
        (valid, {"model": "auto", "input": "hi"}, {}),
        ({**valid, "stream": True}, {"model": "auto", "input": [[1, 2]]}, {}),
    ]
    return examples


async def test_arbitrary_bodies_never_cause_a_500(tmp_path: Path) -> None:
    upstream = FakeUpstream("fuzz")
    await upstream.start()
    config = make_config(
        {
            "database_url": f"sqlite:///{tmp_path}/l.db",
            "ledger": {"spool_dir": str(tmp_path / "spool")},
            "deployments": [fake_deployment("d0", upstream.base_url)],
            "routes": [{"name": "auto", "candidates": ["d0"]}],
        }
    )
    examples = _examples()
    assert len(examples) >= 100
    statuses: set[int] = set()
    try:
        async with app_client(config) as client:
            for body, embed, headers in examples:
                for path, payload in (
                    ("/v1/chat/completions", body),
                    ("/v1/completions", {**body, "prompt": body.get("messages")}),
                    ("/v1/embeddings", embed),
                    ("/v1/route/explain", body),
                ):
                    response = await client.post(path, content=orjson.dumps(payload), headers=headers)
                    _check(response)
                    statuses.add(response.status_code)
    finally:
        await upstream.stop()
    assert 200 in statuses and 400 in statuses  # the generator reaches both sides
