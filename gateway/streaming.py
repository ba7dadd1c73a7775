"""Relaying a stream: forward each upstream event as it arrives, meter it, bill it at the end."""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from typing import Any

import orjson

from core.errors import GatewayError, error_body
from gateway.accounting import choice_text

DONE = b"data: [DONE]\n\n"


class StreamMeter:
    """Watches the chunks going by: usage, generated text, time to first token, how it ended.

    The gateway always asks the upstream for ``include_usage``; when the client did not, the
    usage-only chunk is metered but not forwarded, so the client sees what it asked for.
    """

    def __init__(self, client_wants_usage: bool) -> None:
        self.client_wants_usage = client_wants_usage
        self.usage: dict[str, Any] | None = None
        self.started = time.perf_counter()
        self.first_chunk_at: float | None = None
        self.completed = False
        self.error: GatewayError | None = None
        self._unparsed: list[bytes] = []  # kept only until the upstream reports usage

    def see(self, chunk: bytes) -> bool:
        """Record ``chunk``; True when it should be forwarded to the client."""
        if self.first_chunk_at is None:
            self.first_chunk_at = time.perf_counter()
        if b'"usage"' in chunk:
            try:
                data = orjson.loads(chunk)
            except orjson.JSONDecodeError:
                return True
            usage = data.get("usage") if isinstance(data, dict) else None
            if isinstance(usage, dict):
                self.usage = usage
                self._unparsed.clear()
                if not self.client_wants_usage and not data.get("choices"):
                    return False
                return True
        if self.usage is None:
            self._unparsed.append(chunk)
        return True

    def generated_text(self) -> str:
        """Text the client received, for counting when the upstream gave no usage."""
        parts: list[str] = []
        for raw in self._unparsed:
            try:
                data = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if isinstance(data, dict):
                parts += (choice_text(c) for c in data.get("choices") or ())
        return "".join(parts)

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_chunk_at is None else (self.first_chunk_at - self.started) * 1000


async def relay(first: bytes, rest: Any, meter: StreamMeter) -> AsyncGenerator[bytes, None]:
    """SSE-framed events; a failure mid-stream becomes one OpenAI error event (no [DONE])."""
    try:
        if meter.see(first):
            yield b"data: " + first + b"\n\n"
        async for chunk in rest:
            if meter.see(chunk):
                yield b"data: " + chunk + b"\n\n"
        meter.completed = True
        yield DONE
    except GatewayError as exc:
        meter.error = exc
        yield b"data: " + error_body(exc) + b"\n\n"
