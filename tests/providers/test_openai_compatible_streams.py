"""Streams from an OpenAI-format backend when the gateway asked for usage the client did not."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson

from providers.openai_compatible import UsageHidden


async def _chunks(items: list[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


async def test_usage_the_client_did_not_ask_for_is_taken_out_and_kept() -> None:
    upstream = [
        b'{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":null}',
        b'{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{},"finish_reason":"stop"}], "usage": null}',
        b'{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{"prompt_tokens":7,"completion_tokens":1,"total_tokens":8}}',
    ]
    stream = UsageHidden(_chunks(upstream))
    forwarded = [chunk async for chunk in stream]
    assert len(forwarded) == 2
    assert all(b"usage" not in chunk for chunk in forwarded)
    assert [orjson.loads(c)["choices"][0]["index"] for c in forwarded] == [0, 0]
    assert stream.usage == {"prompt_tokens": 7, "completion_tokens": 1, "total_tokens": 8}


async def test_usage_inside_a_chunk_with_choices_is_kept_but_not_forwarded() -> None:
    chunk = (
        b'{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2}}'
    )
    stream = UsageHidden(_chunks([chunk]))
    forwarded = [c async for c in stream]
    assert "usage" not in orjson.loads(forwarded[0]) and stream.usage == {"prompt_tokens": 3, "completion_tokens": 2}
