"""An upstream that fails at the transport level, on a raw socket, the ways real ones do.

Behaviour per request is the ``fault`` attribute (set by the test):

``reset_mid_body``   headers and half a JSON body, then the connection is reset
``reset_mid_stream`` three SSE chunks, then the connection is reset
``rate_limited``     429 with ``Retry-After: 1``
``silent``           accepts the connection, reads the request, never answers
``drip``             a 200 whose JSON body arrives one byte per second
``garbage``          a 200 whose body is not JSON
``unauthorized``     401, as when the gateway's own key for the backend is wrong
``ok``               a normal chat completion (usage included)
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson

_OK = orjson.dumps(
    {
        "id": "chatcmpl-faulty",
        "object": "chat.completion",
        "created": 1,
        "model": "faulty",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop", "logprobs": None}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
)


def _chunk(text: str) -> bytes:
    payload = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "faulty",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}],
    }
    return b"data: " + orjson.dumps(payload) + b"\n\n"


class FaultyUpstream:
    """A raw asyncio server on 127.0.0.1; ``requests`` counts what reached it."""

    def __init__(self, fault: str = "ok") -> None:
        self.fault = fault
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._hung: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.base_url

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def stop(self) -> None:
        for writer in list(self._hung):
            writer.close()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _read_request(self, reader: asyncio.StreamReader) -> bool:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        await reader.readexactly(length)
        return True

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await self._read_request(reader):
                self.requests += 1
                if not await self._answer(writer):
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            if writer not in self._hung:
                writer.close()

    async def _answer(self, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; False when the connection is finished with."""
        fault = self.fault
        if fault == "silent":
            self._hung.add(writer)
            await asyncio.sleep(3600)
            return False
        if fault == "rate_limited":
            body = (
                b'{"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}'
            )
            writer.write(_head(429, len(body), extra=b"Retry-After: 1\r\n") + body)
        elif fault == "unauthorized":
            body = b'{"error": {"message": "Incorrect API key provided: sk-gate...", "type": "invalid_request_error", "code": "invalid_api_key"}}'
            writer.write(_head(401, len(body)) + body)
        elif fault == "garbage":
            body = b"<html><body>502 Bad Gateway</body></html>"
            writer.write(_head(200, len(body)) + body)
        elif fault == "reset_mid_body":
            writer.write(_head(200, len(_OK)) + _OK[: len(_OK) // 2])
            await writer.drain()
            _reset(writer)
            return False
        elif fault == "reset_mid_stream":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
            for word in ("one", " two", " three"):
                event = _chunk(word)
                writer.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
                await writer.drain()
                await asyncio.sleep(0.05)
            _reset(writer)
            return False
        elif fault == "drip":
            writer.write(_head(200, len(_OK)))
            for i in range(len(_OK)):
                writer.write(_OK[i : i + 1])
                await writer.drain()
                await asyncio.sleep(1.0)
        else:
            writer.write(_head(200, len(_OK)) + _OK)
        await writer.drain()
        return True


def _head(status: int, length: int, extra: bytes = b"") -> bytes:
    reason = {200: b"OK", 401: b"Unauthorized", 429: b"Too Many Requests"}.get(status, b"Error")
    return b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n" % (status, reason, length, extra)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST rather than FIN, as a crashed process or a dropped route does."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        import socket
        import struct

        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.close()
