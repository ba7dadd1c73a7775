"""One local server that speaks every backend's wire format, replaying :mod:`wire_fixtures`.

The first path segment names the backend: ``/vllm/v1/chat/completions``, ``/groq/openai/v1/...``,
``/anthropic/v1/messages``, ``/gemini/models/<model>:generateContent``,
``/bedrock/model/<model>/converse-stream``. OpenAI-compatible backends also answer their servers'
own endpoints (``/health``, ``/info``, ``/props``, ``/api/tags``, ``/api/show``,
``/api/v0/models``) with the context window :data:`CONTEXT_WINDOW`. Every request is recorded in
:attr:`WireUpstream.records` as ``(backend, path, headers, body)``.
"""

from __future__ import annotations

import binascii
import socket
import struct
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from tests.fakes.wire_fixtures import (
    ANSWER,
    ANTHROPIC_ERRORS,
    BEDROCK_ERRORS,
    COMPLETION_TOKENS,
    FLAVOURS,
    GEMINI_ERRORS,
    PIECES,
    PROMPT_TOKENS,
    TOOL_ARG_PIECES,
    TOOL_ARGS,
    TOOL_NAME,
    ErrorFixture,
    scenario_of,
)

CONTEXT_WINDOW = 4096


@dataclass
class Record:
    backend: str
    path: str
    headers: dict[str, str]
    body: Any


def _error(fixture: ErrorFixture) -> web.Response:
    if isinstance(fixture.body, str):
        return web.Response(status=fixture.status, text=fixture.body, content_type="text/html", headers=fixture.headers)
    return web.Response(
        status=fixture.status, body=orjson.dumps(fixture.body), content_type="application/json", headers=fixture.headers
    )


def _usage() -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


class WireUpstream:
    """The fake; ``await start()``, then ``url(backend)``."""

    def __init__(self) -> None:
        self.records: list[Record] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, backend: str, suffix: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{backend}{suffix}"

    async def start(self) -> WireUpstream:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{backend}/{tail:.*}", self.dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def received(self, backend: str) -> list[Record]:
        return [r for r in self.records if r.backend == backend]

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        backend, tail = request.match_info["backend"], "/" + request.match_info["tail"]
        raw = await request.read()
        body = orjson.loads(raw) if raw else None
        self.records.append(Record(backend, tail, dict(request.headers), body))
        header = request.headers.get("x-fake-scenario")
        if backend == "anthropic":
            return await self._anthropic(request, body, header)
        if backend == "gemini":
            return await self._gemini(request, tail, body, header)
        if backend == "bedrock":
            return await self._bedrock(request, tail, body, header)
        if tail.endswith("/chat/completions"):
            model = tail.split("/deployments/")[1].split("/")[0] if "/deployments/" in tail else str(body.get("model"))
            return await self._openai(request, FLAVOURS[backend], body, scenario_of(model, header))
        return self._server_api(backend, tail, body)

    # ---------------------------------------------------------------- OpenAI-compatible
    async def _openai(self, request: web.Request, flavour: Any, body: dict[str, Any], scenario: str) -> web.StreamResponse:
        if scenario in ("context", "ratelimit", "badkey"):
            fixture = getattr(flavour, scenario)
            assert fixture is not None, f"{flavour.name} has no {scenario} error"
            return _error(fixture)
        model = body.get("model")
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": ANSWER}
            finish = "stop"
            if scenario == "tool":
                message = {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {"id": "call_fx1", "type": "function", "function": {"name": TOOL_NAME, "arguments": TOOL_ARGS}}
                    ],
                }
                finish = "tool_calls"
            data = {
                "id": "chatcmpl-fx",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish, **flavour.choice_extras}],
                "usage": _usage(),
                **flavour.reply_extras,
            }
            return web.Response(body=orjson.dumps(data), content_type="application/json")
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        if flavour.sse_comment:
            await response.write(flavour.sse_comment)
        base = {
            "id": "chatcmpl-fx",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            **flavour.chunk_extras,
        }
        asked = bool((body.get("stream_options") or {}).get("include_usage"))
        with_usage = scenario != "nousage" and (asked or not flavour.usage_when_asked_only)

        async def chunk(delta: dict[str, Any], finish: str | None = None) -> None:
            data = {
                **base,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, **flavour.choice_extras}],
            }
            if with_usage:
                data["usage"] = None
            await response.write(b"data: " + orjson.dumps(data) + b"\n\n")

        await chunk({"role": "assistant", "content": ""})
        if scenario == "tool":
            await chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "call_fx1", "type": "function", "function": {"name": TOOL_NAME, "arguments": ""}}
                    ]
                }
            )
            for piece in TOOL_ARG_PIECES:
                await chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
            await chunk({}, "tool_calls")
        else:
            for piece in PIECES:
                await chunk({"content": piece})
            await chunk({}, "stop")
        if with_usage:
            await response.write(b"data: " + orjson.dumps({**base, "choices": [], "usage": _usage()}) + b"\n\n")
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    def _server_api(self, backend: str, tail: str, body: Any) -> web.Response:
        """The self-hosted servers' own endpoints: health, info and model listings."""
        model = "tgi" if backend == "tgi" else "served-model"
        if tail == "/health":
            return web.json_response({"status": "ok"}) if backend == "llamacpp_server" else web.Response(status=200)
        if tail == "/v1/models":
            entry: dict[str, Any] = {"id": model, "object": "model", "owned_by": backend, "created": 0}
            if backend == "vllm":
                entry.update(root=model, max_model_len=CONTEXT_WINDOW)
            if backend == "llamacpp_server":
                entry["meta"] = {"n_ctx_train": CONTEXT_WINDOW * 2, "n_params": 135000000}
            return web.json_response({"object": "list", "data": [entry]})
        if tail == "/props":
            return web.json_response({"default_generation_settings": {"n_ctx": CONTEXT_WINDOW}, "total_slots": 1})
        if tail == "/info":
            return web.json_response(
                {
                    "model_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
                    "max_input_tokens": CONTEXT_WINDOW,
                    "max_total_tokens": CONTEXT_WINDOW + 512,
                    "version": "3.0.1",
                }
            )
        if tail == "/api/tags":
            return web.json_response(
                {
                    "models": [
                        {
                            "name": "served-model:latest",
                            "model": "served-model:latest",
                            "details": {"family": "llama", "parameter_size": "135M"},
                        }
                    ]
                }
            )
        if tail == "/api/show":
            return web.json_response(
                {
                    "details": {"family": "llama"},
                    "model_info": {"general.architecture": "llama", "llama.context_length": CONTEXT_WINDOW},
                }
            )
        if tail == "/api/v0/models":
            return web.json_response(
                {
                    "data": [
                        {
                            "id": model,
                            "type": "llm",
                            "state": "loaded",
                            "max_context_length": CONTEXT_WINDOW * 8,
                            "loaded_context_length": CONTEXT_WINDOW,
                        }
                    ]
                }
            )
        return web.json_response({"error": f"no route {tail}"}, status=404)

    # ---------------------------------------------------------------- Anthropic
    async def _anthropic(self, request: web.Request, body: dict[str, Any], header: str | None) -> web.StreamResponse:
        model = str(body.get("model"))
        scenario = scenario_of(model, header)
        if scenario in ANTHROPIC_ERRORS:
            return _error(ANTHROPIC_ERRORS[scenario])
        if scenario == "tool":
            content = [{"type": "tool_use", "id": "toolu_fx1", "name": TOOL_NAME, "input": orjson.loads(TOOL_ARGS)}]
            stop = "tool_use"
        else:
            content, stop = [{"type": "text", "text": ANSWER}], "end_turn"
        usage = {"input_tokens": PROMPT_TOKENS, "output_tokens": COMPLETION_TOKENS}
        if not body.get("stream"):
            return web.json_response(
                {
                    "id": "msg_fx1",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": content,
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)

        async def event(kind: str, data: dict[str, Any]) -> None:
            await response.write(f"event: {kind}\ndata: ".encode() + orjson.dumps({"type": kind, **data}) + b"\n\n")

        await event(
            "message_start",
            {
                "message": {
                    "id": "msg_fx2",
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": PROMPT_TOKENS, "output_tokens": 1},
                }
            },
        )
        if scenario == "tool":
            await event(
                "content_block_start",
                {"index": 0, "content_block": {"type": "tool_use", "id": "toolu_fx1", "name": TOOL_NAME, "input": {}}},
            )
            await event("ping", {})
            for piece in TOOL_ARG_PIECES:
                await event("content_block_delta", {"index": 0, "delta": {"type": "input_json_delta", "partial_json": piece}})
        else:
            await event("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}})
            await event("ping", {})
            for piece in PIECES:
                await event("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": piece}})
        await event("content_block_stop", {"index": 0})
        final_usage = {"output_tokens": COMPLETION_TOKENS} if scenario != "nousage" else {"output_tokens": 0}
        await event("message_delta", {"delta": {"stop_reason": stop, "stop_sequence": None}, "usage": final_usage})
        await event("message_stop", {})
        await response.write_eof()
        return response

    # ---------------------------------------------------------------- Gemini
    async def _gemini(self, request: web.Request, tail: str, body: dict[str, Any], header: str | None) -> web.StreamResponse:
        model, _, method = tail.removeprefix("/models/").partition(":")
        scenario = scenario_of(model, header)
        if scenario in GEMINI_ERRORS:
            return _error(GEMINI_ERRORS[scenario])
        usage = {
            "promptTokenCount": PROMPT_TOKENS,
            "candidatesTokenCount": COMPLETION_TOKENS,
            "totalTokenCount": PROMPT_TOKENS + COMPLETION_TOKENS,
        }

        def candidate(parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
            out: dict[str, Any] = {"content": {"role": "model", "parts": parts}, "index": 0}
            if finish:
                out["finishReason"] = finish
            return out

        tool_part = {"functionCall": {"name": TOOL_NAME, "args": orjson.loads(TOOL_ARGS)}}
        if method.startswith("generateContent"):
            parts = [tool_part] if scenario == "tool" else [{"text": ANSWER}]
            return web.json_response(
                {
                    "candidates": [candidate(parts, "STOP")],
                    "usageMetadata": usage,
                    "modelVersion": model,
                    "responseId": "fx-gemini",
                }
            )
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)

        async def data(payload: dict[str, Any]) -> None:
            await response.write(b"data: " + orjson.dumps(payload) + b"\r\n\r\n")

        if scenario == "tool":
            await data({"candidates": [candidate([tool_part], "STOP")], "usageMetadata": usage, "modelVersion": model})
        else:
            for i, piece in enumerate(PIECES):
                last = i == len(PIECES) - 1
                payload: dict[str, Any] = {
                    "candidates": [candidate([{"text": piece}], "STOP" if last else None)],
                    "modelVersion": model,
                }
                if last and scenario != "nousage":
                    payload["usageMetadata"] = usage
                await data(payload)
        await response.write_eof()
        return response

    # ---------------------------------------------------------------- Bedrock Converse
    async def _bedrock(self, request: web.Request, tail: str, body: dict[str, Any], header: str | None) -> web.StreamResponse:
        model = tail.split("/model/")[1].rsplit("/", 1)[0]
        scenario = scenario_of(model, header)
        if scenario in BEDROCK_ERRORS:
            return _error(BEDROCK_ERRORS[scenario])
        usage = {
            "inputTokens": PROMPT_TOKENS,
            "outputTokens": COMPLETION_TOKENS,
            "totalTokens": PROMPT_TOKENS + COMPLETION_TOKENS,
        }
        tool_use = {"toolUseId": "tooluse_fx1", "name": TOOL_NAME, "input": orjson.loads(TOOL_ARGS)}
        if tail.endswith("/converse"):
            content = [{"toolUse": tool_use}] if scenario == "tool" else [{"text": ANSWER}]
            return web.json_response(
                {
                    "output": {"message": {"role": "assistant", "content": content}},
                    "stopReason": "tool_use" if scenario == "tool" else "end_turn",
                    "usage": usage,
                    "metrics": {"latencyMs": 120},
                }
            )
        response = web.StreamResponse(headers={"content-type": "application/vnd.amazon.eventstream"})
        await response.prepare(request)

        async def event(kind: str, payload: dict[str, Any]) -> None:
            await response.write(eventstream_message(kind, payload))

        await event("messageStart", {"role": "assistant"})
        if scenario == "tool":
            await event(
                "contentBlockStart",
                {"contentBlockIndex": 0, "start": {"toolUse": {"toolUseId": "tooluse_fx1", "name": TOOL_NAME}}},
            )
            for piece in TOOL_ARG_PIECES:
                await event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"toolUse": {"input": piece}}})
        else:
            for piece in PIECES:
                await event("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"text": piece}})
        await event("contentBlockStop", {"contentBlockIndex": 0})
        await event("messageStop", {"stopReason": "tool_use" if scenario == "tool" else "end_turn"})
        if scenario != "nousage":
            await event("metadata", {"usage": usage, "metrics": {"latencyMs": 120}})
        await response.write_eof()
        return response


def eventstream_message(event_type: str, payload: dict[str, Any]) -> bytes:
    """One AWS event-stream frame (prelude, CRCs, string headers), as Bedrock's streams send them."""
    headers = b""
    for name, value in ((":event-type", event_type), (":content-type", "application/json"), (":message-type", "event")):
        encoded = value.encode()
        headers += bytes([len(name)]) + name.encode() + b"\x07" + struct.pack(">H", len(encoded)) + encoded
    body = orjson.dumps(payload)
    total = 12 + len(headers) + len(body) + 4
    prelude = struct.pack(">II", total, len(headers))
    prelude += struct.pack(">I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + headers + body
    return message + struct.pack(">I", binascii.crc32(message) & 0xFFFFFFFF)
