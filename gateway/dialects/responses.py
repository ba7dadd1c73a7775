"""OpenAI's Responses API as a client dialect: requests in (see :mod:`.responses_request`), a
``response`` object or its typed event stream out; errors in OpenAI's usual shape.

A reply is a ``response`` whose ``output`` holds one ``message`` item (``output_text`` content)
when the model wrote text and one ``function_call`` item per tool call; ``status`` is
``completed``, or ``incomplete`` with ``incomplete_details.reason`` (``max_output_tokens``,
``content_filter``) when the answer was cut; ``usage`` is in input/output tokens. The request's
own settings (instructions, tools, tool_choice, text format, sampling, metadata) are echoed back
as OpenAI does.

A stream is the typed event sequence, each event with its ``sequence_number``:
``response.created``, ``response.in_progress``; per message item ``response.output_item.added``,
``response.content_part.added``, ``response.output_text.delta`` ..., ``response.output_text.done``,
``response.content_part.done``, ``response.output_item.done``; per function call
``response.output_item.added``, ``response.function_call_arguments.delta`` ...,
``response.function_call_arguments.done``, ``response.output_item.done``; then
``response.completed`` (or ``response.incomplete``) with the whole response. A stream that
breaks ends with an ``error`` event and ``response.failed``.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson

from core.errors import GatewayError, error_body
from gateway.dialects import sse_event
from gateway.dialects.responses_request import to_openai_chat

_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _id(prefix: str) -> str:
    return f"{prefix}_{os.urandom(16).hex()}"


def responses_usage(usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return None
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    out_details = usage.get("completion_tokens_details")
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": _count(details.get("cached_tokens")) if isinstance(details, dict) else 0},
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": _count(out_details.get("reasoning_tokens")) if isinstance(out_details, dict) else 0
        },
        "total_tokens": prompt + completion,
    }


def _count(value: Any) -> int:
    return value if type(value) is int else 0


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [output_text(text)] if status == "completed" else [],
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def function_item(item_id: str, call_id: str, name: str, arguments: str, status: str = "completed") -> dict[str, Any]:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id, "name": name, "arguments": arguments}


class ResponsesDialect:
    """Responses in, Responses out; one per request (it echoes the request's settings)."""

    name = "responses"

    def __init__(self) -> None:
        self.request: dict[str, Any] = {}
        self.created_at = int(time.time())
        self.response_id = _id("resp")
        self._sequence = 0  # every stream event is numbered, the error events included

    def to_openai(self, body: dict[str, Any]) -> dict[str, Any]:
        chat = to_openai_chat(body)
        self.request = body
        return chat

    def response(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None,
        model: str | None = None,
        finish_reason: Any = None,
    ) -> dict[str, Any]:
        """The ``response`` object, with the request's settings echoed."""
        request = self.request
        incomplete = _INCOMPLETE.get(str(finish_reason)) if finish_reason is not None else None
        if status == "completed" and incomplete:
            status = "incomplete"
        text: dict[str, Any] = request["text"] if isinstance(request.get("text"), dict) else {}
        return {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": None,
            "incomplete_details": {"reason": incomplete} if status == "incomplete" else None,
            "instructions": request.get("instructions"),
            "max_output_tokens": request.get("max_output_tokens"),
            "model": model or request.get("model"),
            "output": output,
            "parallel_tool_calls": request.get("parallel_tool_calls", True),
            "previous_response_id": None,
            "reasoning": {"effort": None, "summary": None},
            "store": False,
            "temperature": request.get("temperature", 1.0),
            "text": {"format": text.get("format") or {"type": "text"}},
            "tool_choice": request.get("tool_choice", "auto"),
            "tools": request.get("tools") or [],
            "top_p": request.get("top_p", 1.0),
            "truncation": "disabled",
            "usage": usage,
            "user": request.get("user"),
            "metadata": request.get("metadata") or {},
        }

    def reply(self, data: dict[str, Any], raw: bytes) -> bytes:
        choices = data.get("choices") or [{}]
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message") or {}
        output: list[dict[str, Any]] = []
        if isinstance(message.get("content"), str) and message["content"]:
            output.append(message_item(_id("msg"), message["content"]))
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            output.append(
                function_item(
                    _id("fc"), call.get("id") or _id("call"), function.get("name") or "", function.get("arguments") or ""
                )
            )
        usage = responses_usage(data.get("usage"))
        return orjson.dumps(self.response("completed", output, usage, data.get("model"), choice.get("finish_reason")))

    async def stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        writer = _EventWriter(self)
        async for raw in chunks:
            try:
                chunk = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(chunk, dict):
                for event in writer.feed(chunk):
                    yield event
        for event in writer.finish():
            yield event

    def error(self, error: GatewayError) -> bytes:
        return error_body(error)

    def stream_error(self, error: GatewayError) -> bytes:
        failed = self.response("failed", [], None)
        failed["error"] = {"code": error.code or "server_error", "message": error.message}
        return sse_event(
            "error",
            {
                "type": "error",
                "code": error.code,
                "message": error.message,
                "param": error.param,
                "sequence_number": self.next_sequence(),
            },
        ) + sse_event("response.failed", {"type": "response.failed", "response": failed, "sequence_number": self.next_sequence()})

    def next_sequence(self) -> int:
        number = self._sequence
        self._sequence += 1
        return number


class _EventWriter:
    """OpenAI chunks in, Responses stream events out; one output item open at a time."""

    def __init__(self, dialect: ResponsesDialect) -> None:
        self.dialect = dialect
        self.started = False
        self.model: str | None = None
        self.output: list[dict[str, Any]] = []  # finished items
        self.text_item: str | None = None  # id of the open message item
        self.text = ""
        self.calls: dict[int, dict[str, Any]] = {}  # openai tool-call index -> its item
        self.open_call: int | None = None
        self.finish_reason: Any = None
        self.usage: Any = None

    def _event(self, kind: str, **fields: Any) -> bytes:
        return sse_event(kind, {"type": kind, **fields, "sequence_number": self.dialect.next_sequence()})

    def _start(self, chunk: dict[str, Any]) -> list[bytes]:
        self.started = True
        self.model = chunk.get("model") if isinstance(chunk.get("model"), str) else None
        response = self.dialect.response("in_progress", [], None, self.model)
        return [self._event("response.created", response=response), self._event("response.in_progress", response=response)]

    def _close(self) -> list[bytes]:
        events: list[bytes] = []
        index = len(self.output)
        if self.text_item is not None:
            item_id, self.text_item = self.text_item, None
            part = output_text(self.text)
            events += [
                self._event(
                    "response.output_text.done", item_id=item_id, output_index=index, content_index=0, text=self.text, logprobs=[]
                ),
                self._event("response.content_part.done", item_id=item_id, output_index=index, content_index=0, part=part),
            ]
            item = message_item(item_id, self.text)
            self.output.append(item)
            events.append(self._event("response.output_item.done", output_index=index, item=item))
            self.text = ""
        elif self.open_call is not None:
            call, self.open_call = self.calls[self.open_call], None
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=call["id"],
                    output_index=index,
                    name=call["name"],
                    arguments=call["arguments"],
                )
            )
            item = {**call, "status": "completed"}
            self.output.append(item)
            events.append(self._event("response.output_item.done", output_index=index, item=item))
        return events

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
                events += self._text(text)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    events += self._call(call)
            if choice.get("finish_reason") is not None:
                self.finish_reason = choice["finish_reason"]
        return events

    def _text(self, text: str) -> list[bytes]:
        events: list[bytes] = []
        index = len(self.output)
        if self.text_item is None:
            events += self._close()
            index = len(self.output)
            self.text_item = _id("msg")
            events.append(
                self._event(
                    "response.output_item.added", output_index=index, item=message_item(self.text_item, "", status="in_progress")
                )
            )
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=self.text_item,
                    output_index=index,
                    content_index=0,
                    part=output_text(""),
                )
            )
        self.text += text
        events.append(
            self._event(
                "response.output_text.delta", item_id=self.text_item, output_index=index, content_index=0, delta=text, logprobs=[]
            )
        )
        return events

    def _call(self, call: dict[str, Any]) -> list[bytes]:
        index = call.get("index", 0)
        function = call.get("function") or {}
        events: list[bytes] = []
        if index not in self.calls:
            events += self._close()
            item = function_item(_id("fc"), call.get("id") or _id("call"), function.get("name") or "", "", status="in_progress")
            self.calls[index] = item
            self.open_call = index
            events.append(self._event("response.output_item.added", output_index=len(self.output), item=dict(item)))
        elif self.open_call != index:
            return []  # interleaved calls: the Responses stream has no way to say it
        item = self.calls[index]
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            item["arguments"] += arguments
            events.append(
                self._event(
                    "response.function_call_arguments.delta", item_id=item["id"], output_index=len(self.output), delta=arguments
                )
            )
        return events

    def finish(self) -> list[bytes]:
        events = [] if self.started else self._start({})
        events += self._close()
        response = self.dialect.response("completed", self.output, responses_usage(self.usage), self.model, self.finish_reason)
        kind = "response.completed" if response["status"] == "completed" else "response.incomplete"
        events.append(self._event(kind, response=response))
        return events
