"""Anthropic's Messages API as a client dialect: requests in (see :mod:`.anthropic_request`),
messages, event streams and errors out, in Anthropic's shapes.

A reply is one ``message`` object: ``content`` blocks (``text``, then one ``tool_use`` per tool
call, its arguments parsed back into ``input``), ``stop_reason`` from OpenAI's ``finish_reason``
(``stop`` -> ``end_turn``; ``length`` -> ``max_tokens``; ``tool_calls`` -> ``tool_use``;
``content_filter`` -> ``refusal``; OpenAI does not say which stop sequence matched, so
``stop_sequence`` is never named) and ``usage`` in input/output tokens.

A stream is Anthropic's event sequence: ``message_start``, then per block
``content_block_start``, ``content_block_delta`` (``text_delta`` / ``input_json_delta``),
``content_block_stop``; ``ping`` after the first block opens, as Anthropic sends it; then
``message_delta`` with ``stop_reason`` and the usage, and ``message_stop``. ``message_start``
carries an estimate of the input tokens (OpenAI reports usage last); ``message_delta`` carries
the backend's own counts, which Anthropic's SDKs take as the final ones.

Errors are ``{"type": "error", "error": {"type", "message"}}`` with Anthropic's error types.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import orjson

from core.errors import GatewayError
from gateway.dialects import sse_event
from gateway.dialects.anthropic_request import to_openai_chat

# Anthropic's error type for each status it documents; 5xx it has no name for are api_error.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def error_type(status: int) -> str:
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def anthropic_error_body(error: GatewayError) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type(error.status), "message": error.message}}


def new_message_id() -> str:
    return "msg_" + os.urandom(12).hex()


class AnthropicDialect:
    """Anthropic Messages in, Anthropic Messages out; one per request (it keeps the model name)."""

    name = "anthropic"

    def __init__(self) -> None:
        self.model = ""
        self.prompt_estimate = 0

    def to_openai(self, body: dict[str, Any]) -> dict[str, Any]:
        chat = to_openai_chat(body)
        self.model = chat["model"]
        if chat.get("stream"):
            self.prompt_estimate = _estimate_tokens(chat)
        return chat

    def reply(self, data: dict[str, Any], raw: bytes) -> bytes:
        choices = data.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message") or {}
        content: list[dict[str, Any]] = []
        if isinstance(message.get("content"), str) and message["content"]:
            content.append({"type": "text", "text": message["content"]})
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            content.append(
                {
                    "type": "tool_use",
                    "id": call.get("id") or "toolu_" + os.urandom(12).hex(),
                    "name": function.get("name") or "",
                    "input": parse_arguments(function.get("arguments")),
                }
            )
        usage: dict[str, Any] = data["usage"] if isinstance(data.get("usage"), dict) else {}
        return orjson.dumps(
            {
                "id": new_message_id(),
                "type": "message",
                "role": "assistant",
                "model": data.get("model") or self.model,
                "content": content,
                "stop_reason": stop_reason(choice.get("finish_reason")),
                "stop_sequence": None,
                "usage": anthropic_usage(usage),
            }
        )

    async def stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        events = _EventWriter(self.model, self.prompt_estimate)
        async for raw in chunks:
            try:
                chunk = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(chunk, dict):
                for event in events.feed(chunk):
                    yield event
        for event in events.finish():
            yield event

    def error(self, error: GatewayError) -> bytes:
        return orjson.dumps(anthropic_error_body(error))

    def stream_error(self, error: GatewayError) -> bytes:
        return sse_event("error", anthropic_error_body(error))


def stop_reason(finish_reason: Any) -> str | None:
    if finish_reason is None:
        return None
    return _STOP_REASONS.get(str(finish_reason), "end_turn")


def anthropic_usage(usage: dict[str, Any]) -> dict[str, int]:
    prompt = usage.get("prompt_tokens")
    completion = usage.get("completion_tokens")
    out = {"input_tokens": prompt if type(prompt) is int else 0, "output_tokens": completion if type(completion) is int else 0}
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if type(cached) is int and cached:
        out["cache_read_input_tokens"] = cached
        out["input_tokens"] = max(0, out["input_tokens"] - cached)  # Anthropic counts them apart
    return out


def parse_arguments(arguments: Any) -> dict[str, Any]:
    """Tool-call arguments (a JSON string) as the object Anthropic's ``input`` must be."""
    if isinstance(arguments, dict):
        return arguments
    if not isinstance(arguments, str) or not arguments.strip():
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"arguments": arguments}  # a model that wrote broken JSON: keep what it wrote
    return value if isinstance(value, dict) else {"value": value}


def _estimate_tokens(chat: dict[str, Any]) -> int:
    """Roughly four characters a token: message_start needs a number before the backend's count."""
    size = len(orjson.dumps(chat["messages"])) + (len(orjson.dumps(chat["tools"])) if chat.get("tools") else 0)
    return max(1, size // 4)


class _EventWriter:
    """OpenAI chunks in, Anthropic stream events out, one content block open at a time."""

    def __init__(self, model: str, prompt_estimate: int) -> None:
        self.model = model
        self.prompt_estimate = prompt_estimate
        self.started = False
        self.pinged = False
        self.block = -1  # index of the last block opened
        self.open: str | None = None  # "text" or "tool:<openai index>"
        self.tool_blocks: dict[int, int] = {}
        self.finish_reason: Any = None
        self.usage: dict[str, Any] | None = None
        self.deltas = 0

    def _start(self, chunk: dict[str, Any]) -> list[bytes]:
        self.started = True
        message: dict[str, Any] = {
            "id": new_message_id(),
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model") or self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.prompt_estimate, "output_tokens": 1},
        }
        return [sse_event("message_start", {"type": "message_start", "message": message})]

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        self.open = None
        return [sse_event("content_block_stop", {"type": "content_block_stop", "index": self.block})]

    def _open(self, key: str, block: dict[str, Any]) -> list[bytes]:
        events = self._close()
        self.block += 1
        self.open = key
        start = {"type": "content_block_start", "index": self.block, "content_block": block}
        events.append(sse_event("content_block_start", start))
        if not self.pinged:
            self.pinged = True
            events.append(sse_event("ping", {"type": "ping"}))
        return events

    def _delta(self, delta: dict[str, Any]) -> bytes:
        self.deltas += 1
        return sse_event("content_block_delta", {"type": "content_block_delta", "index": self.block, "delta": delta})

    def feed(self, chunk: dict[str, Any]) -> list[bytes]:
        events = [] if self.started else self._start(chunk)
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or {}
            text = delta.get("content")
            if isinstance(text, str) and text:
                if self.open != "text":
                    events += self._open("text", {"type": "text", "text": ""})
                events.append(self._delta({"type": "text_delta", "text": text}))
            for call in delta.get("tool_calls") or ():
                events += self._tool_delta(call)
            if choice.get("finish_reason") is not None:
                self.finish_reason = choice["finish_reason"]
        return events

    def _tool_delta(self, call: Any) -> list[bytes]:
        if not isinstance(call, dict):
            return []
        index = call.get("index", 0)
        function = call.get("function") or {}
        events: list[bytes] = []
        key = f"tool:{index}"
        if index not in self.tool_blocks:
            block: dict[str, Any] = {
                "type": "tool_use",
                "id": call.get("id") or "toolu_" + os.urandom(12).hex(),
                "name": function.get("name") or "",
                "input": {},
            }
            events += self._open(key, block)
            self.tool_blocks[index] = self.block
        elif self.open != key:
            return []  # a backend interleaving two calls' arguments: Anthropic has no way to say it
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            events.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return events

    def finish(self) -> list[bytes]:
        events = [] if self.started else self._start({})
        events += self._close()
        usage = anthropic_usage(self.usage or {})
        if self.usage is None:  # a backend that streams no usage: one token per delta is near enough
            usage = {"input_tokens": self.prompt_estimate, "output_tokens": self.deltas}
        reason = stop_reason(self.finish_reason) or "end_turn"
        events.append(
            sse_event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reason, "stop_sequence": None},
                    "usage": usage,
                },
            )
        )
        events.append(sse_event("message_stop", {"type": "message_stop"}))
        return events
