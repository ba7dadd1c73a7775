"""The OpenAI dialect: the identity.

OpenAI in, OpenAI out: the backend's bytes are forwarded as they came (a JSON reply) or
framed as they came (a stream), so the hot path re-encodes nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from core.errors import GatewayError, error_body

DONE = b"data: [DONE]\n\n"


class OpenAIDialect:
    """The identity: OpenAI in, OpenAI out, the backend's bytes forwarded as they came."""

    name = "openai"

    def to_openai(self, body: dict[str, Any]) -> dict[str, Any]:
        return body

    def reply(self, data: dict[str, Any], raw: bytes) -> bytes:
        return raw

    async def stream(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            yield b"data: " + chunk + b"\n\n"
        yield DONE

    def error(self, error: GatewayError) -> bytes:
        return error_body(error)

    def stream_error(self, error: GatewayError) -> bytes:
        return b"data: " + error_body(error) + b"\n\n"


OPENAI = OpenAIDialect()
