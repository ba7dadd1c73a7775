"""Self-hosted inference servers as data over the shared OpenAI-compatible adapter.

Each preset says what differs about one server, and nothing else: where it listens by default,
how to ask whether it is up, where it reports the model's context window, and the model name it
wants. Everything else (the request and reply bodies, streams, error mapping) is the
OpenAI-compatible adapter's, the way Portkey's Groq adapter reuses its OpenAI base.

The servers' own references: vLLM's OpenAI-compatible server (``/health``; ``max_model_len`` in
``/v1/models``), Ollama (``/api/tags``, ``/api/show``; tags default to ``:latest``), llama.cpp's
``llama-server`` (``/health``, 503 while loading; ``meta.n_ctx_train`` in ``/v1/models`` and
``n_ctx`` in ``/props``), Hugging Face TGI (``/health``, ``/info`` with ``max_input_tokens``;
the Messages API takes ``model: "tgi"``), and LM Studio (``/v1/models``; ``max_context_length``
in its ``/api/v0/models``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from providers.http import UpstreamHTTP

Discover = Callable[["UpstreamHTTP", str], Awaitable[int | None]]
"""``(http client at the server's root, model)`` -> the context window the server reports."""


@dataclass(frozen=True, slots=True)
class Preset:
    """What one self-hosted server does its own way."""

    provider: str
    default_base_url: str  # the OpenAI-compatible base, ending in /v1
    health_paths: tuple[str, ...]  # GETs on the server's root; every one must answer 2xx
    discover: Discover
    upstream_model: str | None = None  # the model name the server wants, whatever the config says


def _int(value: Any) -> int | None:
    return value if type(value) is int and value > 0 else None


def _listed(listing: Any) -> list[dict[str, Any]]:
    data = listing.get("data") if isinstance(listing, dict) else None
    return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


def same_model(reported: str, configured: str) -> bool:
    """Ollama reports ``llama3.2:latest`` for a model asked for as ``llama3.2``."""
    return reported == configured or (":" not in configured and reported == configured + ":latest")


async def _vllm(http: UpstreamHTTP, model: str) -> int | None:
    for entry in _listed(await http.get_json("/v1/models")):
        if entry.get("id") == model or entry.get("root") == model:
            return _int(entry.get("max_model_len"))
    return None


async def _ollama(http: UpstreamHTTP, model: str) -> int | None:
    shown = await http.post_json_value("/api/show", {"model": model})
    info = shown.get("model_info") if isinstance(shown, dict) else None
    if isinstance(info, dict):
        for key, value in info.items():
            if key.endswith(".context_length") and _int(value):
                return _int(value)
    return None


async def _llamacpp(http: UpstreamHTTP, model: str) -> int | None:
    props = await http.get_json("/props")
    settings = props.get("default_generation_settings") if isinstance(props, dict) else None
    if isinstance(settings, dict) and _int(settings.get("n_ctx")):
        return _int(settings.get("n_ctx"))
    for entry in _listed(await http.get_json("/v1/models")):
        meta = entry.get("meta")
        if isinstance(meta, dict) and _int(meta.get("n_ctx_train")):
            return _int(meta.get("n_ctx_train"))
    return None


async def _tgi(http: UpstreamHTTP, model: str) -> int | None:
    info = await http.get_json("/info")
    if not isinstance(info, dict):
        return None
    return _int(info.get("max_input_tokens")) or _int(info.get("max_input_length"))


async def _lmstudio(http: UpstreamHTTP, model: str) -> int | None:
    for entry in _listed(await http.get_json("/api/v0/models")):
        if entry.get("id") == model:
            return _int(entry.get("loaded_context_length")) or _int(entry.get("max_context_length"))
    return None


PRESETS: dict[str, Preset] = {
    "vllm": Preset("vllm", "http://127.0.0.1:8000/v1", ("/health",), _vllm),
    "ollama": Preset("ollama", "http://127.0.0.1:11434/v1", ("/api/tags",), _ollama),
    "llamacpp_server": Preset("llamacpp_server", "http://127.0.0.1:8080/v1", ("/health",), _llamacpp),
    "tgi": Preset("tgi", "http://127.0.0.1:8080/v1", ("/health", "/info"), _tgi, upstream_model="tgi"),
    "lmstudio": Preset("lmstudio", "http://127.0.0.1:1234/v1", ("/v1/models",), _lmstudio),
}


def server_root(base_url: str) -> str:
    """``http://host:port`` from an OpenAI-compatible base URL (``.../v1``)."""
    root = base_url.rstrip("/")
    return root[: -len("/v1")] if root.endswith("/v1") else root
