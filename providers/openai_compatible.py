"""Any backend that speaks OpenAI's wire format: vLLM, Ollama (/v1), llama.cpp server, TGI,
LM Studio, OpenRouter, Groq, Together, Fireworks, ...

Bodies pass through untouched except ``model`` (set to the deployment's upstream model), so
vendor-specific fields reach the backend (:data:`PARAMETERS`). Responses are forwarded as the
upstream's bytes; its errors keep the ``param`` they name, with their message summarised.

Streams: when the deployment asks for usage on every stream (``stream_usage: always``, the
default for hosted deployments, whose bills must be exact) but the client did not, the stream is
requested with ``include_usage`` and what the client did not ask for is taken out of it: the
``"usage":null`` field of each chunk and the final usage-only chunk, whose usage the gateway
still reads from :attr:`UsageHidden.usage`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson

from core.errors import UpstreamProtocolError
from providers.base import Reply
from providers.http import HTTPTimeouts, UpstreamHTTP
from providers.parameters import ParameterPolicy, forwarded, translated
from providers.settings import DeploymentConfig

PARAMETERS = ParameterPolicy(
    "openai_compatible",
    {"model": translated("the deployment's `model`, the name the backend knows")},
    others=forwarded("as sent; the backend accepts it, or answers its own 400 (with the `param` it names)"),
    summary="OpenAI-format HTTP backends: vLLM, Ollama, llama.cpp server, TGI, ... (`provider: openai_compatible`)",
)
"""What the HTTP adapter does with each chat request parameter (see providers/parameters.py)."""


class OpenAICompatibleProvider:
    """Adapter for OpenAI-format HTTP backends, one pooled connection set per deployment."""

    def __init__(self, config: DeploymentConfig, http: UpstreamHTTP | None = None) -> None:
        self.name = config.name
        self.config = config
        headers = dict(config.headers)
        if config.api_key is not None and config.api_key.get_secret_value():
            headers.setdefault("authorization", f"Bearer {config.api_key.get_secret_value()}")
        self.http = http or UpstreamHTTP(
            config.base_url or "",
            deployment=config.name,
            headers=headers,
            timeouts=HTTPTimeouts(
                connect=config.timeouts.connect,
                first_byte=config.timeouts.first_byte,
                read=config.timeouts.read,
                total=config.timeouts.total,
            ),
            max_connections=config.max_connections,
        )

    async def chat(self, body: dict[str, Any]) -> Reply:
        return self._from_upstream(await self.http.post_json("/chat/completions", self._to_upstream(body)))

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        return self._stream("/chat/completions", body)

    async def complete(self, body: dict[str, Any]) -> Reply:
        return self._from_upstream(await self.http.post_json("/completions", self._to_upstream(body)))

    def complete_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        return self._stream("/completions", body)

    def _stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[bytes]:
        options = body.get("stream_options")
        wanted = isinstance(options, dict) and bool(options.get("include_usage"))
        if wanted or not self.config.asks_stream_usage:
            return self.http.stream_sse(path, self._to_upstream(body))
        asked = {**body, "stream_options": {**(options or {}), "include_usage": True}}
        return UsageHidden(self.http.stream_sse(path, self._to_upstream(asked)))

    async def embed(self, body: dict[str, Any]) -> Reply:
        return self._from_upstream(await self.http.post_json("/embeddings", self._to_upstream(body)))

    async def models(self) -> list[str]:
        listing = await self.http.get_json("/models")
        return [m["id"] for m in listing.get("data", []) if isinstance(m, dict) and "id" in m]

    async def health(self) -> bool:
        try:
            await self.http.get_json("/models")
        except Exception:  # noqa: BLE001 - a probe answers yes or no
            return False
        return True

    async def aclose(self) -> None:
        await self.http.aclose()

    def _to_upstream(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**PARAMETERS.forwardable(body), "model": self.config.model}

    def _from_upstream(self, raw: bytes) -> Reply:
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UpstreamProtocolError(f"{self.name}: upstream answered invalid JSON", deployment=self.name) from exc
        if not isinstance(data, dict):
            raise UpstreamProtocolError(f"{self.name}: upstream answered a non-object", deployment=self.name)
        return Reply(body=raw, data=data)


class UsageHidden(AsyncIterator[bytes]):
    """A stream asked for usage the client did not want: forwards it without the usage, keeps it."""

    _NULL_FIELDS = (b',"usage":null', b', "usage": null')

    def __init__(self, inner: AsyncIterator[bytes]) -> None:
        self._inner = inner
        self.usage: dict[str, Any] | None = None

    def __aiter__(self) -> UsageHidden:
        return self

    async def __anext__(self) -> bytes:
        while True:
            chunk = await self._inner.__anext__()
            if b'"usage":{' in chunk or b'"usage": {' in chunk:
                try:
                    data = orjson.loads(chunk)
                except orjson.JSONDecodeError:
                    return chunk
                if isinstance(data, dict) and isinstance(data.get("usage"), dict):
                    self.usage = data["usage"]
                    if not data.get("choices"):
                        continue  # the usage-only chunk: not for this client
                    del data["usage"]
                    return orjson.dumps(data)
                return chunk
            for field in self._NULL_FIELDS:
                if field in chunk:
                    return chunk.replace(field, b"", 1)
            return chunk

    async def aclose(self) -> None:
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            await aclose()
