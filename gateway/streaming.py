"""Relaying a stream: forward each upstream event as it arrives and meter it on the way.

Events are forwarded as the upstream's bytes, never re-encoded. The client's own
``stream_options.include_usage`` is what the upstream is asked for, so the client sees what it
asked for; the meter records the usage chunk when there is one and otherwise keeps the text it
needs to count the tokens itself.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from core.errors import GatewayError
from core.wire import reply_text
from gateway.dialects import Dialect


class StreamMeter:
    """Watches the chunks going by: usage, generated text, time to first token, how it ended."""

    __slots__ = ("_unparsed", "completed", "error", "first_chunk_at", "started", "usage")

    def __init__(self, started: float | None = None) -> None:
        self.usage: dict[str, Any] | None = None
        self.started = time.perf_counter() if started is None else started  # when the time to first token starts
        self.first_chunk_at: float | None = None
        self.completed = False
        self.error: GatewayError | None = None
        self._unparsed: list[bytes] = []  # kept only until the upstream reports usage

    def see(self, chunk: bytes) -> None:
        """Record one chunk payload."""
        if self.first_chunk_at is None:
            self.first_chunk_at = time.perf_counter()
        if b'"usage":{' in chunk or b'"usage": {' in chunk:
            try:
                data = orjson.loads(chunk)
            except orjson.JSONDecodeError:
                data = None
            usage = data.get("usage") if isinstance(data, dict) else None
            if isinstance(usage, dict):
                self.usage = usage
                self._unparsed.clear()
                return
        if self.usage is None:
            self._unparsed.append(chunk)

    def generated_text(self) -> str:
        """Text the client received, for counting when the upstream gave no usage."""
        parts: list[str] = []
        for raw in self._unparsed:
            try:
                parts.append(reply_text(orjson.loads(raw)))
            except orjson.JSONDecodeError:
                continue
        return "".join(parts)

    @property
    def ttft_ms(self) -> float | None:
        return None if self.first_chunk_at is None else (self.first_chunk_at - self.started) * 1000


async def metered(first: bytes, rest: AsyncIterator[bytes], meter: StreamMeter) -> AsyncIterator[bytes]:
    """The upstream's chunk payloads, each seen by the meter on the way."""
    meter.see(first)
    yield first
    async for chunk in rest:
        meter.see(chunk)
        yield chunk
    meter.completed = True


async def relay(dialect: Dialect, first: bytes, rest: AsyncIterator[bytes], meter: StreamMeter) -> AsyncGenerator[bytes, None]:
    """The client's framed events; a failure mid-stream becomes one error event in its format."""
    try:
        async for event in dialect.stream(metered(first, rest, meter)):
            yield event
    except GatewayError as exc:
        meter.error = exc
        yield dialect.stream_error(exc)
