"""Any backend that speaks OpenAI's wire format: vLLM, Ollama (/v1), llama.cpp server, TGI,
LM Studio, OpenRouter, Groq, Together, Fireworks, ...

Bodies pass through untouched except ``model`` (set to the deployment's upstream model), so
vendor-specific fields reach the backend (:data:`PARAMETERS`). Responses are forwarded as the
upstream's bytes; its errors keep the ``param`` they name, with their message summarised.
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
                connect=config.timeouts.connect, first_byte=config.timeouts.first_byte, read=config.timeouts.read
            ),
            max_connections=config.max_connections,
        )

    async def chat(self, body: dict[str, Any]) -> Reply:
        return self._from_upstream(await self.http.post_json("/chat/completions", self._to_upstream(body)))

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        return self.http.stream_sse("/chat/completions", self._to_upstream(body))

    async def complete(self, body: dict[str, Any]) -> Reply:
        return self._from_upstream(await self.http.post_json("/completions", self._to_upstream(body)))

    def complete_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        return self.http.stream_sse("/completions", self._to_upstream(body))

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
