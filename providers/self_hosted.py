"""Self-hosted inference servers (vLLM, Ollama, llama.cpp's server, TGI, LM Studio): the shared
OpenAI-compatible adapter plus one :class:`~providers.presets.Preset` of data each.

On top of the OpenAI-compatible adapter: the preset's default ``base_url``, its model name where
the server wants its own (TGI's ``tgi``), a health probe on the server's own endpoints (what the
gateway's prober feeds to the circuit breakers and ``/readyz``), and :meth:`discover`, the
context window as the server reports it. Error bodies are read by the shared HTTP seam, which
knows each server's way of saying "the prompt does not fit" (``providers.http``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from providers.http import HTTPTimeouts, UpstreamHTTP
from providers.openai_compatible import OpenAICompatibleProvider
from providers.presets import PRESETS, Preset, same_model, server_root
from providers.settings import DeploymentConfig

log = logging.getLogger("switchyard.providers")


@dataclass(frozen=True, slots=True)
class Discovery:
    """What the server says about itself: its models and the deployment model's context window."""

    models: tuple[str, ...]
    context_window: int | None


class SelfHostedProvider(OpenAICompatibleProvider):
    """An OpenAI-compatible server with a preset (``provider: vllm | ollama | ...``)."""

    def __init__(self, config: DeploymentConfig, http: UpstreamHTTP | None = None) -> None:
        self.preset: Preset = PRESETS[config.provider]
        if not config.base_url:
            config = config.model_copy(update={"base_url": self.preset.default_base_url})
        super().__init__(config, http)
        self.root = UpstreamHTTP(
            server_root(config.base_url or ""),
            deployment=config.name,
            headers=self.http.headers,
            timeouts=HTTPTimeouts(connect=config.timeouts.connect, first_byte=min(config.timeouts.first_byte, 5.0)),
            max_connections=4,
        )
        self.discovered: Discovery | None = None

    async def start(self) -> None:
        """Ask the server about the model once; a server that is not up yet is not an error here."""
        try:
            self.discovered = await self.discover()
        except Exception as exc:  # noqa: BLE001 - discovery informs, it never stops a start
            log.info("deployment %s: discovery failed (%s)", self.name, type(exc).__name__)
            return
        reported = self.discovered.context_window
        if reported is not None and reported < self.config.context_window:
            log.warning(
                "deployment %s: the server reports a context window of %d tokens, the config says %d",
                self.name,
                reported,
                self.config.context_window,
            )

    async def discover(self) -> Discovery:
        models = tuple(await self.models())
        context = await self.preset.discover(self.root, self.config.model)
        return Discovery(models, context)

    async def health(self) -> bool:
        try:
            for path in self.preset.health_paths:
                await self.root.get(path)
        except Exception:  # noqa: BLE001 - a probe answers yes or no
            return False
        return True

    async def serves_model(self) -> bool:
        """Whether the server lists the deployment's model (Ollama's tags taken into account)."""
        wanted = self.preset.upstream_model or self.config.model
        return any(same_model(m, wanted) for m in await self.models())

    async def aclose(self) -> None:
        await super().aclose()
        await self.root.aclose()

    def _to_upstream(self, body: dict[str, Any]) -> dict[str, Any]:
        return {**super()._to_upstream(body), "model": self.preset.upstream_model or self.config.model}
