"""What a client may see of a backend's error body.

A backend's own message is kept only when it is OpenAI-shaped (``{"error": {"message", ...}}``, or
a top-level ``message`` as vLLM sends) and plain: one line, at most :data:`MAX_MESSAGE`
characters, no markup. Anything else (a proxy's HTML page, a stack trace, a multi-kilobyte
validation dump) becomes a summary: the status, the error's type and code, and the first line
when that line is itself plain. The ``param`` an upstream names is kept, so a client learns
which of its parameters was refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

MAX_MESSAGE = 300
_MARKUP = re.compile(r"<\s*/?\s*[A-Za-z!][^>]*>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True, slots=True)
class UpstreamErrorBody:
    """An upstream error as the gateway will repeat it."""

    message: str
    type: str | None = None
    code: str | None = None
    param: str | None = None


def plain(text: str) -> str | None:
    """``text`` when it can be shown as it is: one line, short, no markup or control characters."""
    text = text.strip()
    if not text or len(text) > MAX_MESSAGE or "\n" in text or "\r" in text:
        return None
    if _MARKUP.search(text) or _CONTROL.search(text):
        return None
    return text


def summarise(text: str, status: int, *, what: str = "an error") -> str:
    """``text`` if plain; else its first line (if plain, shortened) or a bare summary."""
    kept = plain(text)
    if kept is not None:
        return kept
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if first and not _MARKUP.search(first) and not _CONTROL.search(first):
        if len(first) > MAX_MESSAGE - 40:
            first = first[: MAX_MESSAGE - 40].rstrip() + "..."
        return f"{first} (upstream message shortened)"
    return f"the upstream answered HTTP {status} with {what} that is not shown"


CREDENTIALS_REFUSED = (
    "the backend refused the gateway's own credentials for this deployment (HTTP {status}); "
    "its message is not repeated, since it may quote part of the gateway's key"
)


def read_error_body(body: bytes, status: int, content_type: str = "") -> UpstreamErrorBody:
    """The message, type, code and param of an upstream error body, made safe to repeat.

    A 401 or 403 is about the gateway's own key for the backend, never the client's: its message
    is never repeated (backends quote a prefix of the key they were given)."""
    if status in (401, 403):
        return UpstreamErrorBody(CREDENTIALS_REFUSED.format(status=status), type="api_error", code="upstream_auth_error")
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    error = data.get("error", data) if isinstance(data, dict) else None
    if isinstance(error, str):  # Ollama, TGI, LM Studio: {"error": "text"[, "error_type": ...]}
        kind = data.get("error_type") if isinstance(data, dict) else None
        if kind == "validation" and _TGI_CONTEXT in error:
            return UpstreamErrorBody(summarise(error, status), type="invalid_request_error", code="context_length_exceeded")
        return UpstreamErrorBody(summarise(error, status), type=_label(kind))
    if isinstance(error, dict) and isinstance(error.get("message") or error.get("detail"), str):
        type_ = _label(error.get("type"))
        return UpstreamErrorBody(
            summarise(error.get("message") or error["detail"], status),  # "detail": RFC 7807 (NVIDIA's endpoints)
            type=type_,
            code="context_length_exceeded" if type_ in _CONTEXT_ERROR_TYPES else _label(error.get("code")),
            param=_label(error.get("param")),
        )
    kind = (content_type.split(";", 1)[0].strip() or "an unknown type") if data is None else "JSON"
    size = f"{len(body)} bytes of {kind}" if body else "an empty body"
    return UpstreamErrorBody(f"the upstream answered HTTP {status} with {size}, not an OpenAI error")


# Servers that say "the prompt does not fit" in their own words; the rest say "context length".
_CONTEXT_ERROR_TYPES = frozenset({"exceed_context_size_error"})  # llama.cpp's llama-server
_TGI_CONTEXT = "must be <="  # TGI: "`inputs` tokens + `max_new_tokens` must be <= 4096. Given: ..."


def _label(value: object) -> str | None:
    """A type / code / param worth repeating: a short plain string (vLLM's numeric codes too)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value)
    return text if plain(text) is not None and len(text) <= 100 else None
