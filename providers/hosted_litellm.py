"""Hosted APIs that speak their own protocol (Anthropic, Gemini, Bedrock, Azure, Vertex, Cohere,
Mistral, ...) through litellm, which translates to and from OpenAI format.

litellm costs seconds to import, so it is imported on first use (or in :meth:`start`), in a
worker thread, with its cost map read from the package (``LITELLM_LOCAL_MODEL_COST_MAP``), its
tiktoken files taken from its own bundle and its telemetry, callbacks and debug chatter off:
nothing reaches for the network except the deployment's own API. Its exceptions are mapped onto
the gateway's ``Upstream*`` tree with the backend's real HTTP status (Anthropic's 529
"overloaded" stays 529, where litellm would say 500).

This module is named ``hosted_litellm`` so that it never shadows the ``litellm`` package.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import threading
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

from core.errors import (
    GatewayError,
    InvalidRequest,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamProtocolError,
    UpstreamStatus,
    UpstreamTimeout,
)
from providers import openai_shapes as shapes
from providers.base import Reply
from providers.parameters import (
    ParameterPolicy,
    forwarded,
    ignored,
    translated,
    unsupported,
)
from providers.propagation import ATTEMPT_HEADERS
from providers.settings import DeploymentConfig
from providers.upstream_errors import CREDENTIALS_REFUSED, summarise

_DEFAULT_NOT_SENT = "the default ({value}) is not sent, so a backend without the parameter accepts it; other values as forwarded"
_NO_OP_DEFAULTS: dict[str, Any] = {"n": 1, "logprobs": False, "presence_penalty": 0, "frequency_penalty": 0}

PARAMETERS = ParameterPolicy(
    "litellm",
    {
        "model": translated("the deployment's litellm model (`provider/model`)"),
        "stream": translated("litellm's streaming call; each chunk re-shaped as OpenAI's"),
        "stream_options": translated(
            "usage is always asked of litellm (the ledger needs it); the usage chunk reaches the client only with `include_usage`"
        ),
        "metadata": ignored(
            "litellm reserves `metadata` for its own callbacks, so it is not sent; the gateway reads its `x-switchyard-*` keys"
        ),
        **{name: translated(_DEFAULT_NOT_SENT.format(value=str(v).lower())) for name, v in _NO_OP_DEFAULTS.items()},
    },
    others=forwarded(
        "to litellm, which maps it onto the backend's own parameter; a backend without one answers 400 naming it"
        " (`unsupported_parameter`)"
    ),
    summary="hosted APIs through litellm (`provider: litellm`)",
)
"""What the litellm adapter does with each chat request parameter (see providers/parameters.py)."""

# The gateway retries and falls back itself; a parameter the backend lacks is refused, not dropped.
_DEFAULTS = {"drop_params": False, "num_retries": 0, "max_retries": 0}

_litellm: Any = None
_import_lock = threading.Lock()


def _import_litellm() -> Any:
    """Import and quieten litellm once (blocking; call through :func:`get_litellm`)."""
    global _litellm
    with _import_lock:
        if _litellm is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            spec = importlib.util.find_spec("litellm")
            if spec is not None and spec.submodule_search_locations:
                bundled = Path(spec.submodule_search_locations[0]) / "litellm_core_utils" / "tokenizers"
                os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(bundled))
            # litellm's TypedDicts trip a pydantic UserWarning on first use; it says nothing to us.
            warnings.filterwarnings("ignore", message=r"Item '.*' on TypedDict class", category=UserWarning)
            import litellm

            litellm.telemetry = False
            litellm.suppress_debug_info = True
            litellm.turn_off_message_logging = True
            litellm.disable_hf_tokenizer_download = True
            litellm.callbacks = []
            litellm.success_callback = []
            litellm.failure_callback = []
            _litellm = litellm
    return _litellm


async def get_litellm() -> Any:
    """The litellm module, imported off the event loop the first time."""
    if _litellm is not None:
        return _litellm
    return await asyncio.to_thread(_import_litellm)


class LiteLLMProvider:
    """Adapter for a hosted API reached through litellm; one instance serves one deployment."""

    def __init__(self, config: DeploymentConfig) -> None:
        self.name = config.name
        self.config = config

    async def start(self) -> None:
        """Import litellm now rather than on the first request."""
        await get_litellm()

    async def models(self) -> list[str]:
        return [self.config.model]

    async def health(self) -> bool:
        # No cheap probe exists for most hosted APIs; the executor's circuit breaker watches errors.
        return _litellm is not None or importlib.util.find_spec("litellm") is not None

    async def aclose(self) -> None:
        # litellm's HTTP clients are shared by every deployment in the process: nothing to free.
        return None

    # --- endpoints ----------------------------------------------------------------------
    async def chat(self, body: dict[str, Any]) -> Reply:
        litellm = await get_litellm()
        response = await self._call(litellm.acompletion(**self._to_upstream(body)))
        return Reply.from_data(_from_upstream(response, "chat.completion"))

    def chat_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        return self._stream(body, "acompletion", "chat.completion.chunk")

    async def complete(self, body: dict[str, Any]) -> Reply:
        litellm = await get_litellm()
        response = await self._call(litellm.atext_completion(**self._to_upstream(body)))
        return Reply.from_data(_from_upstream(response, "text_completion"))

    def complete_stream(self, body: dict[str, Any]) -> AsyncIterator[bytes]:
        return self._stream(body, "atext_completion", "text_completion")

    async def embed(self, body: dict[str, Any]) -> Reply:
        litellm = await get_litellm()
        kwargs = self._to_upstream(body)
        encoding = kwargs.pop("encoding_format", None)  # always floats from litellm; packed below
        if encoding not in (None, "float", "base64"):
            raise InvalidRequest("encoding_format must be 'float' or 'base64'", param="encoding_format")
        response = await self._call(litellm.aembedding(**kwargs))
        data = _from_upstream(response, "list")
        for item in data.get("data") or []:
            if isinstance(item, dict) and isinstance(item.get("embedding"), list):
                item["embedding"] = shapes.encode_vector(item["embedding"], encoding)
        return Reply.from_data(data)

    # --- plumbing -----------------------------------------------------------------------
    def _to_upstream(self, body: dict[str, Any]) -> dict[str, Any]:
        kwargs = PARAMETERS.forwardable(body)
        for name, default in _NO_OP_DEFAULTS.items():
            if name in body and body[name] != default and body[name] is not None:
                kwargs[name] = body[name]
        kwargs.update(_DEFAULTS)
        kwargs["model"] = self.config.model
        if self.config.base_url:
            kwargs["api_base"] = self.config.base_url
        if self.config.api_key is not None and self.config.api_key.get_secret_value():
            kwargs["api_key"] = self.config.api_key.get_secret_value()
        if self.config.headers:
            kwargs["extra_headers"] = {**self.config.headers, **(kwargs.get("extra_headers") or {})}
        trace_headers = ATTEMPT_HEADERS.get()
        if trace_headers:
            kwargs["extra_headers"] = {**(kwargs.get("extra_headers") or {}), **trace_headers}
        kwargs["timeout"] = _timeout(self.config)
        kwargs.update(self.config.litellm_params)
        return kwargs

    async def _call(self, awaitable: Any) -> Any:
        """Await a litellm call within ``first_byte`` seconds, mapping every failure."""
        try:
            async with asyncio.timeout(self.config.timeouts.first_byte):
                return await awaitable
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            raise map_litellm_error(exc, self.name) from exc

    def _stream(self, body: dict[str, Any], function: str, object_name: str) -> shapes.MeteredStream:
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        seen: dict[str, Any] = {}

        async def chunks() -> AsyncIterator[bytes]:
            litellm = await get_litellm()
            kwargs = self._to_upstream(body)
            kwargs["stream"] = True
            kwargs["stream_options"] = {"include_usage": True}  # always: the ledger needs it
            upstream = await self._call(getattr(litellm, function)(**kwargs))
            iterator = upstream.__aiter__()
            try:
                while True:
                    try:
                        async with asyncio.timeout(self.config.timeouts.read):
                            chunk = await iterator.__anext__()
                    except StopAsyncIteration:
                        return
                    except asyncio.CancelledError:
                        raise
                    except BaseException as exc:
                        raise map_litellm_error(exc, self.name, mid_stream=True) from exc
                    data = _chunk(chunk, object_name)
                    if data.get("usage"):
                        seen["usage"] = data["usage"]
                    if not wants_usage:
                        data.pop("usage", None)
                        if not data["choices"]:
                            continue
                    else:
                        data.setdefault("usage", None)
                    yield shapes.dumps(data)
            finally:
                close = getattr(upstream, "aclose", None)
                if close is not None:
                    try:
                        await close()
                    except Exception:  # noqa: BLE001 - closing a dead stream must not mask the real error
                        pass

        return shapes.MeteredStream(chunks(), lambda: seen.get("usage"))  # type: ignore[arg-type]


def _timeout(config: DeploymentConfig) -> Any:
    import httpx  # a litellm dependency; cheap next to litellm itself

    t = config.timeouts
    return httpx.Timeout(t.read, connect=t.connect)


def _dump(response: Any) -> dict[str, Any]:
    if isinstance(response, dict):
        return response
    if hasattr(response, "model_dump"):
        return cast("dict[str, Any]", response.model_dump())
    return dict(response)


def _from_upstream(response: Any, object_name: str) -> dict[str, Any]:
    data: dict[str, Any] = shapes.clean_openai(_dump(response))
    data.setdefault("object", object_name)
    return data


def _chunk(chunk: Any, object_name: str) -> dict[str, Any]:
    """One litellm stream chunk as OpenAI sends it; the usage chunk has ``choices: []``."""
    data: dict[str, Any] = shapes.clean_openai(_dump(chunk))
    data["object"] = data.get("object") or object_name
    choices = [c for c in data.get("choices") or [] if _meaningful(c)]
    if object_name == "text_completion":
        for choice in choices:
            choice["text"] = choice.get("text") or ""
    data["choices"] = choices
    if not data.get("usage"):
        data.pop("usage", None)
    return data


def _meaningful(choice: dict[str, Any]) -> bool:
    if choice.get("finish_reason") is not None or choice.get("logprobs") is not None:
        return True
    if "delta" in choice:
        return bool(choice["delta"])
    return bool(choice.get("text"))


# --- errors ---------------------------------------------------------------------------------
def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen and len(seen) < 12:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _http_status(chain: list[BaseException]) -> tuple[int | None, Any]:
    """The status and headers of the backend's real HTTP answer, when one is in the chain."""
    import httpx

    for exc in chain:
        if isinstance(exc, httpx.HTTPStatusError):
            return exc.response.status_code, exc.response.headers
    for exc in chain:
        status = getattr(exc, "status_code", None)
        if isinstance(status, int):
            return status, getattr(exc, "litellm_response_headers", None)
    return None, None


# How backends behind litellm word "the prompt does not fit" when litellm does not recognise it
# (TGI-backed Hugging Face and Together endpoints, Bedrock, Gemini, Anthropic).
_CONTEXT_PHRASES = (
    "context length",
    "maximum context",
    "context window",
    "context_length_exceeded",
    "prompt is too long",
    "input is too long",
    "exceeds the maximum number of tokens",
    "`max_new_tokens` must be <=",
    "too many input tokens",
)


def _says_context_exceeded(text: str) -> bool:
    lowered = text.lower()
    return any(phrase in lowered for phrase in _CONTEXT_PHRASES)


def map_litellm_error(exc: BaseException, deployment: str, *, mid_stream: bool = False) -> GatewayError:
    """Translate a litellm (or transport) exception into the gateway's error tree."""
    if isinstance(exc, GatewayError):
        return exc
    import httpx

    litellm = _litellm
    chain = _chain(exc)
    text = str(exc).strip() or type(exc).__name__
    if litellm and isinstance(exc, litellm.UnsupportedParamsError):
        return _unsupported(text, deployment)
    timeouts = (TimeoutError, httpx.TimeoutException) + ((litellm.Timeout,) if litellm else ())
    if any(isinstance(e, timeouts) for e in chain):
        what = "stopped sending mid-stream" if mid_stream else "did not answer in time"
        return UpstreamTimeout(f"{deployment}: upstream {what}", deployment=deployment)
    connection = (httpx.ConnectError, httpx.RemoteProtocolError, ConnectionError)
    if mid_stream and any(isinstance(e, connection) for e in chain):
        return UpstreamProtocolError(f"{deployment}: upstream response was cut short", deployment=deployment)
    if any(isinstance(e, connection) for e in chain) or (litellm and isinstance(exc, litellm.APIConnectionError)):
        reason = summarise(text, 502, what="a connection error")
        return UpstreamConnectionError(f"{deployment}: cannot connect to upstream ({reason})", deployment=deployment)
    status, headers = _http_status(chain)
    code = None
    if (litellm and isinstance(exc, litellm.ContextWindowExceededError)) or _says_context_exceeded(text):
        status, code = 400, "context_length_exceeded"
    elif litellm and isinstance(exc, litellm.AuthenticationError):
        status = 401  # Gemini answers a bad key with 400 API_KEY_INVALID: still the gateway's credentials
    elif litellm and isinstance(exc, litellm.PermissionDeniedError):
        status = 403
    if status is None:
        reason = summarise(text, 502, what="an error")
        return UpstreamError(f"{deployment}: upstream call failed ({type(exc).__name__}: {reason})", deployment=deployment)
    retry_after = None
    if headers is not None:
        try:
            retry_after = float(headers.get("retry-after")) if headers.get("retry-after") else None
        except (TypeError, ValueError):
            retry_after = None
    # a 401/403 is about the gateway's own key, which the backend's message may quote
    reason = CREDENTIALS_REFUSED.format(status=status) if status in (401, 403) else summarise(text, status)
    return UpstreamStatus(
        f"{deployment}: {reason}",
        upstream_status=status,
        deployment=deployment,
        upstream_code=code,
        retry_after=retry_after,
    )


def _unsupported(text: str, deployment: str) -> GatewayError:
    """litellm's "<provider> does not support parameters: ['x', ...]" as a 400 naming the first."""
    listed = re.search(r"parameters: \[([^\]]*)\]", text)
    names = re.findall(r"'([^']+)'", listed.group(1)) if listed else []
    if not names:
        return InvalidRequest(f"{deployment}: {summarise(text, 400)}", code="unsupported_parameter")
    return unsupported(names[0], f"the backend of deployment '{deployment}' has no such parameter")
