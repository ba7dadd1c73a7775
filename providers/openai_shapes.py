"""Builders for OpenAI wire-format objects, shared by adapters that do not get them ready-made.

Everything here is plain data in, plain ``dict`` out: chat completions and their stream chunks,
text completions, embedding lists (float or base64), usage objects, ids and timestamps, plus
:func:`clean_openai` to strip the ``None`` fields and vendor extras that OpenAI's JSON never has,
and :class:`MeteredStream`, a chunk iterator whose token usage is known even when cut short.
"""

from __future__ import annotations

import base64
import math
import struct
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import orjson


def new_id(prefix: str) -> str:
    """``chatcmpl-…`` / ``cmpl-…`` style id."""
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def chat_completion(
    *, id: str, model: str, created: int, choices: list[dict[str, Any]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage,
    }


def chat_choice(
    index: int,
    content: str | None,
    finish_reason: str | None,
    *,
    tool_calls: list[dict[str, Any]] | None = None,
    function_call: dict[str, Any] | None = None,
    logprobs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    if function_call:
        message["function_call"] = function_call
    return {"index": index, "message": message, "logprobs": logprobs, "finish_reason": finish_reason}


def chat_chunk(
    *,
    id: str,
    model: str,
    created: int,
    choices: list[dict[str, Any]],
    usage: dict[str, Any] | None = None,
    with_usage_field: bool = False,
) -> dict[str, Any]:
    """One ``chat.completion.chunk``; ``with_usage_field`` adds ``"usage": null`` as OpenAI does
    on every chunk when ``stream_options.include_usage`` is set."""
    chunk: dict[str, Any] = {
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    }
    if usage is not None or with_usage_field:
        chunk["usage"] = usage
    return chunk


def chunk_choice(
    index: int, delta: dict[str, Any], finish_reason: str | None = None, logprobs: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}


def text_completion(
    *, id: str, model: str, created: int, choices: list[dict[str, Any]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    """A ``text_completion`` object, also the shape of each completions stream chunk. ``usage``
    is left out when None: the spec's completion object has no null usage (only the last chunk
    of a stream that asked for usage carries it)."""
    data: dict[str, Any] = {"id": id, "object": "text_completion", "created": created, "model": model, "choices": choices}
    if usage is not None:
        data["usage"] = usage
    return data


def text_choice(index: int, text: str, finish_reason: str | None, logprobs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}


def encode_vector(vector: Sequence[float], encoding_format: str | None) -> list[float] | str:
    """``float`` (default) keeps the list; ``base64`` packs float32 little-endian, like OpenAI."""
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")
    return list(vector)


def shorten_vector(vector: Sequence[float], dimensions: int) -> list[float]:
    """Keep the first ``dimensions`` components and L2-normalise again (OpenAI's ``dimensions``)."""
    head = list(vector[:dimensions])
    norm = math.sqrt(sum(x * x for x in head))
    return [x / norm for x in head] if norm > 0 else head


def embedding_list(
    *, model: str, vectors: Sequence[Sequence[float]], prompt_tokens: int, encoding_format: str | None = None
) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [
            {"object": "embedding", "index": i, "embedding": encode_vector(v, encoding_format)} for i, v in enumerate(vectors)
        ],
        "model": model,
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }


# Keys some SDKs (litellm) add that no OpenAI object has.
_VENDOR_KEYS = frozenset({"provider_specific_fields", "citations", "thinking_blocks", "_hidden_params", "_response_ms"})
# Keys OpenAI always sends, even when null (``system_fingerprint`` is a string or absent).
_KEEP_NULL = frozenset({"content", "finish_reason", "logprobs", "refusal", "usage"})


def clean_openai(value: Any, *, in_delta: bool = False) -> Any:
    """Drop vendor extras and ``None`` fields OpenAI omits; keep the ones it always sends.

    Inside a stream ``delta`` every ``None`` is dropped (OpenAI sends only what changed).
    """
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key in _VENDOR_KEYS:
                continue
            if item is None and (in_delta or key not in _KEEP_NULL):
                continue
            out[key] = clean_openai(item, in_delta=in_delta or key == "delta")
        return out
    if isinstance(value, list):
        return [clean_openai(item, in_delta=in_delta) for item in value]
    return value


def dumps(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data)


class MeteredStream(AsyncIterator[bytes]):
    """Chunk payloads (``bytes``) plus :attr:`usage`, readable at any time.

    ``usage`` is the OpenAI usage object as far as it is known — for a stream the client cut
    short it counts the tokens generated until the cut, so the gateway can still bill exactly.
    ``aclose()`` closes the inner generator, then awaits ``on_close`` (e.g. waiting for a worker
    thread to stop generating) so ``usage`` is final afterwards.
    """

    def __init__(
        self,
        inner: AsyncGenerator[bytes, None],
        usage: Callable[[], dict[str, Any] | None],
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._inner = inner
        self._usage = usage
        self._on_close = on_close
        self._closed = False

    def __aiter__(self) -> MeteredStream:
        return self

    async def __anext__(self) -> bytes:
        return await self._inner.__anext__()

    @property
    def usage(self) -> dict[str, Any] | None:
        return self._usage()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._inner.aclose()
        finally:
            if self._on_close is not None:
                await self._on_close()
