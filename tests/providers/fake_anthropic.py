"""A tiny local server speaking Anthropic's Messages API wire format, for litellm tests.

Behaviour is picked from the model name, the way TensorZero's dummy provider does it:

- ``error-429`` / ``error-500`` / ``error-401`` / ... answer that HTTP status with Anthropic's
  error body ``{"type": "error", "error": {"type": ..., "message": ...}}``;
  ``error-overloaded`` answers 529 ``overloaded_error``.
- ``slow-*`` waits ``SLOW_SECONDS`` before answering.
- anything else answers :data:`REPLY_TEXT`, as one message or as an SSE stream
  (``message_start``, ``content_block_start``, ``ping``, ``content_block_delta`` x N,
  ``content_block_stop``, ``message_delta`` with usage, ``message_stop``).

Every request is recorded in :attr:`FakeAnthropic.requests` (path, headers, JSON body).
"""

from __future__ import annotations

import asyncio
import json
import socket
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

REPLY_TEXT = "Paris is the capital of France."
INPUT_TOKENS = 21
SLOW_SECONDS = 5.0

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeAnthropic:
    """The fake server; use ``async with FakeAnthropic() as fake:`` and ``fake.base_url``."""

    host: str = "127.0.0.1"
    port: int = 0
    requests: list[RecordedRequest] = field(default_factory=list)
    _runner: web.AppRunner | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeAnthropic:
        app = web.Application()
        app.router.add_post("/v1/messages", self._messages)
        app.router.add_post("/messages", self._messages)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeAnthropic:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(RecordedRequest(request.path, dict(request.headers), body))
        model = str(body.get("model", ""))
        if model.startswith("error-"):
            return _error_response(model.removeprefix("error-"))
        if model.startswith("slow-"):
            await asyncio.sleep(SLOW_SECONDS)
        if body.get("stream"):
            return await _stream(request, model)
        return web.json_response(
            {
                "id": "msg_fake_0001",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": REPLY_TEXT}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": len(_pieces())},
            },
            headers={"request-id": "req_fake_0001"},
        )


def _pieces() -> list[str]:
    words = REPLY_TEXT.split(" ")
    return [w if i == 0 else " " + w for i, w in enumerate(words)]


def _error_response(kind: str) -> web.Response:
    status = 529 if kind == "overloaded" else int(kind) if kind.isdigit() else 400
    error_type = _ERROR_TYPES.get(status, "api_error")
    headers = {"request-id": "req_fake_error"}
    if status == 429:
        headers["retry-after"] = "3"
    payload = {"type": "error", "error": {"type": error_type, "message": f"fake {error_type} ({status})"}}
    return web.json_response(payload, status=status, headers=headers)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def _stream(request: web.Request, model: str) -> web.StreamResponse:
    response = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
    await response.prepare(request)
    pieces = _pieces()
    message = {
        "id": "msg_fake_0002",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": 1},
    }
    await response.write(_sse("message_start", {"type": "message_start", "message": message}))
    await response.write(
        _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    )
    await response.write(_sse("ping", {"type": "ping"}))
    for piece in pieces:
        delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
        await response.write(_sse("content_block_delta", delta))
        await asyncio.sleep(0)
    await response.write(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
    await response.write(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": len(pieces)},
            },
        )
    )
    await response.write(_sse("message_stop", {"type": "message_stop"}))
    await response.write_eof()
    return response
